"""Map furniture on the Agg canvas: figures of a fixed pixel size, the map frame (title,
subtitle, attribution, CRS note), cells as one ``PolyCollection``, outlines, scale bar, north
arrow and the legend column.

Figures are built on the Agg canvas directly (no pyplot, no global figure registry, no display):
a returned figure is freed when dropped. Sizes are fixed in pixels (default 1600 wide at 160 dpi)
and saved without tight cropping, so a PNG is exactly ``width_px`` wide. Maps keep equal aspect
in the cells' metric CRS; their axes are labelled in km of that CRS (easting/northing, the
EPSG code in the label).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeAlias

import geopandas as gpd
import numpy as np
import shapely
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.text import Text
from matplotlib.ticker import FuncFormatter, MaxNLocator

DEFAULT_WIDTH_PX = 1600
DEFAULT_DPI = 160
TITLE_PT, SUBTITLE_PT, LEGEND_PT, LABEL_PT, ATTRIB_PT = 16, 11, 11, 10, 8.5
HALO: list[patheffects.AbstractPathEffect] = [
    patheffects.withStroke(linewidth=3, foreground="white")
]
# Map layout in inches: title band on top, legend column right, text from _LEFT_IN;
# the map axes start _AXIS_LEFT_IN from the left and _AXIS_BOTTOM_IN from the bottom (room for
# the km tick labels and axis labels).
_TOP_IN, _LEFT_IN, _RIGHT_IN = 0.85, 0.15, 2.6
_AXIS_LEFT_IN, _AXIS_BOTTOM_IN = 0.85, 0.95
MIN_FIGURE_WIDTH_IN = 6.0  # the map then gets >= 6 - 0.85 - 2.6 = 2.55 inches of width
Layer: TypeAlias = gpd.GeoDataFrame | gpd.GeoSeries


# ----------------------------------------------------------------------------- figures


def new_figure(width_px: int, height_px: int, dpi: int) -> Figure:
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: Path | str) -> Path:
    """Write ``fig`` as PNG at its own size and dpi (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=fig.dpi, facecolor="white")
    return path


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes (e.g. to embed as base64 in Dagster markdown metadata)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, facecolor="white")
    return buf.getvalue()


def finish(fig: Figure, path: Path | str | None) -> Figure:
    if path is not None:
        save_figure(fig, path)
    return fig


# ---------------------------------------------------------------------------- cells and outlines


def _cell_polygons(cells: gpd.GeoDataFrame) -> tuple[list[np.ndarray], np.ndarray]:
    """Exterior rings of every cell polygon part, and the row each part belongs to."""
    parts, row = shapely.get_parts(cells.geometry.to_numpy(), return_index=True)
    keep = ~shapely.is_empty(parts)
    parts, row = parts[keep], row[keep]
    coords, ring = shapely.get_coordinates(shapely.get_exterior_ring(parts), return_index=True)
    verts = np.split(coords, np.flatnonzero(np.diff(ring)) + 1) if len(coords) else []
    return verts, row


def draw_cells(ax: Axes, cells: gpd.GeoDataFrame, colours: np.ndarray) -> PolyCollection:
    """One PolyCollection of all cells; edges in the face colour hide antialiasing seams."""
    verts, row = _cell_polygons(cells)
    coll = PolyCollection(
        verts, facecolors=colours[row], edgecolors=colours[row], linewidths=0.3, zorder=1
    )
    ax.add_collection(coll)
    return coll


def outline_handles(
    ax: Axes,
    boundary: Layer | None,
    overlay: Layer | None,
    overlay_label: str | None,
    boundary_label: str,
) -> list[Any]:
    """Draw the boundary and overlay outlines; return their legend handles."""
    handles: list[Any] = []
    for layer, colour, lw, ls, label in (
        (boundary, "0.15", 1.0, "-", boundary_label),
        (overlay, "black", 2.0, "--", overlay_label or "overlay"),
    ):
        if layer is None:
            continue
        outline = layer.geometry.boundary if hasattr(layer, "geometry") else layer.boundary
        coords, ring = shapely.get_coordinates(
            shapely.get_parts(outline.to_numpy()), return_index=True
        )
        parts = np.split(coords, np.flatnonzero(np.diff(ring)) + 1) if len(coords) else []
        halo: list[patheffects.AbstractPathEffect] = [
            patheffects.withStroke(linewidth=lw + 2.5, foreground="white")
        ]
        lines = LineCollection(parts, colors=colour, linewidths=lw, linestyles=ls, zorder=4)
        lines.set_path_effects(halo)
        ax.add_collection(lines)
        handles.append(Line2D([], [], color=colour, lw=lw, ls=ls, label=label))
    return handles


# ------------------------------------------------------------------------- scale bar, north arrow


def _nice_length_m(span_m: float) -> float:
    """A round scale-bar length (1, 2 or 5 x 10^n metres) of at most a quarter of ``span_m``."""
    target = max(span_m / 4.0, 1.0)
    exp = 10.0 ** math.floor(math.log10(target))
    return max(m * exp for m in (1.0, 2.0, 5.0) if m * exp <= target)


def _fmt_length(m: float) -> str:
    return f"{m / 1000:g} km" if m >= 1000 else f"{m:g} m"


def _scale_bar(ax: Axes) -> None:
    """Two-segment black/white bar at the lower left, labelled 0, half, full length."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    length = _nice_length_m(x1 - x0)
    left, base, h = x0 + 0.04 * (x1 - x0), y0 + 0.04 * (y1 - y0), 0.012 * (y1 - y0)
    ax.add_patch(Rectangle((left, base), length / 2, h, fc="black", ec="black", lw=1, zorder=6))
    ax.add_patch(
        Rectangle((left + length / 2, base), length / 2, h, fc="white", ec="black", lw=1, zorder=6)
    )
    unit = 1000.0 if length >= 1000 else 1.0
    for frac, text in ((0, "0"), (0.5, f"{length / 2 / unit:g}"), (1, _fmt_length(length))):
        ax.text(
            left + frac * length,
            base + 1.8 * h,
            text,
            ha="center",
            va="bottom",
            fontsize=LABEL_PT,
            path_effects=HALO,
            zorder=7,
        )


def _north_arrow(ax: Axes) -> None:
    """An upward arrow with "N" at the upper left (grid north of the projected CRS)."""
    ax.annotate(
        "",
        xy=(0.045, 0.935),
        xytext=(0.045, 0.845),
        xycoords="axes fraction",
        arrowprops={
            "facecolor": "black",
            "edgecolor": "white",
            "width": 5,
            "headwidth": 15,
            "headlength": 12,
        },
        zorder=7,
    )
    ax.text(
        0.045,
        0.945,
        "N",
        transform=ax.transAxes,
        ha="center",
        va="bottom",
        fontsize=14,
        fontweight="bold",
        path_effects=HALO,
        zorder=7,
    )


# ----------------------------------------------------------------------------- the map frame


def _shrink_to_fit(text: Text, max_width_px: float, min_pt: float = 9) -> None:
    """Lower the font size of a one-line text until it is at most ``max_width_px`` wide."""
    renderer = text.get_figure(root=True).canvas.get_renderer()  # type: ignore[union-attr,attr-defined]
    size = float(text.get_fontsize())
    while text.get_window_extent(renderer).width > max_width_px and size > min_pt:
        size -= 0.5
        text.set_fontsize(size)


def _extent(cells: gpd.GeoDataFrame, boundary: Layer | None) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1): the cells and boundary with a 3 % margin."""
    if cells.crs is not None and cells.crs.is_geographic:
        raise ValueError("maps need cells in a metric CRS (metres), not degrees")
    bounds = np.asarray(cells.total_bounds, dtype=np.float64)
    if boundary is not None and len(boundary):
        b = np.asarray(boundary.total_bounds, dtype=np.float64)
        bounds = np.concatenate([np.minimum(bounds[:2], b[:2]), np.maximum(bounds[2:], b[2:])])
    pad = 0.03 * max(bounds[2] - bounds[0], bounds[3] - bounds[1])
    return bounds[0] - pad, bounds[1] - pad, bounds[2] + pad, bounds[3] + pad


def _km_axes(ax: Axes, crs: Any) -> None:
    """Tick labels in km of the metric CRS and axis labels that name it."""
    epsg = crs.to_epsg() if crs is not None else None
    where = f"EPSG:{epsg}" if epsg else (crs.to_string() if crs is not None else "metric CRS")
    km = FuncFormatter(lambda v, _pos: f"{v / 1000:g}")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 5, 10]))
        axis.set_major_formatter(km)
    ax.tick_params(labelsize=LABEL_PT - 1, colors="0.35", length=3)
    ax.set_xlabel(f"easting (km, {where})", fontsize=LABEL_PT - 1, color="0.35", labelpad=2)
    ax.set_ylabel(f"northing (km, {where})", fontsize=LABEL_PT - 1, color="0.35", labelpad=2)


def _framed_axes(
    extent: tuple[float, float, float, float], width_px: int, dpi: int, crs: Any = None
) -> tuple[Figure, Axes]:
    """A figure tall enough for the extent at equal aspect, with km-labelled map axes."""
    x0, y0, x1, y1 = extent
    width_in = width_px / dpi
    map_w_in = width_in - _AXIS_LEFT_IN - _RIGHT_IN
    map_h_in = map_w_in * (y1 - y0) / (x1 - x0)
    height_px = round((map_h_in + _TOP_IN + _AXIS_BOTTOM_IN) * dpi)
    fig = new_figure(width_px, height_px, dpi)
    height_in = height_px / dpi
    ax = fig.add_axes(
        (
            _AXIS_LEFT_IN / width_in,
            _AXIS_BOTTOM_IN / height_in,
            map_w_in / width_in,
            map_h_in / height_in,
        )
    )
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal", adjustable="box")
    _km_axes(ax, crs)
    for spine in ax.spines.values():
        spine.set_color("0.7")
    return fig, ax


def _line(fig: Figure, y_in: float, text: str, max_px: float, min_pt: float = 9, **kw: Any) -> None:
    """One line of text at the left margin, ``y_in`` inches from the bottom, shrunk to fit."""
    width_in, height_in = fig.get_size_inches()
    va = "top" if y_in > height_in / 2 else "bottom"
    t = fig.text(_LEFT_IN / width_in, y_in / height_in, text, ha="left", va=va, **kw)
    _shrink_to_fit(t, max_px, min_pt)


def _headings(
    fig: Figure, title: str, subtitle: str | None, attribution: str, crs: Any, dpi: int
) -> None:
    """Title and subtitle on top; attribution and the CRS note at the bottom."""
    width_in, height_in = fig.get_size_inches()
    line_px = width_in * dpi - 2 * _LEFT_IN * dpi
    _line(fig, height_in - 0.12, title, line_px, fontsize=TITLE_PT, fontweight="bold")
    if subtitle:
        _line(fig, height_in - 0.5, subtitle, line_px, fontsize=SUBTITLE_PT, color="0.25")
    if attribution:  # leaves room for the CRS note
        _line(fig, 0.12, attribution, line_px - 2.2 * dpi, 6, fontsize=ATTRIB_PT, color="0.3")
    if crs is not None:
        fig.text(
            1 - 0.15 / width_in,
            0.12 / height_in,
            f"CRS: {crs.to_string()}",
            ha="right",
            va="bottom",
            fontsize=ATTRIB_PT,
            color="0.3",
        )


def map_axes(
    cells: gpd.GeoDataFrame,
    boundary: Layer | None,
    title: str,
    subtitle: str | None,
    attribution: str,
    width_px: int,
    dpi: int,
) -> tuple[Figure, Axes]:
    """A figure sized to the data's aspect, with title, attribution, scale bar and north arrow.

    A figure narrower than :data:`MIN_FIGURE_WIDTH_IN` at ``dpi`` is drawn at a lower dpi (the
    same ``width_px``), so the fixed legend column and axis margin leave the map room.
    """
    dpi = min(dpi, max(1, int(width_px / MIN_FIGURE_WIDTH_IN)))
    fig, ax = _framed_axes(_extent(cells, boundary), width_px, dpi, cells.crs)
    _headings(fig, title, subtitle, attribution, cells.crs, dpi)
    _scale_bar(ax)
    _north_arrow(ax)
    return fig, ax


def side_legend(ax: Axes, handles: Sequence[Any], title: str | None = None) -> None:
    ax.legend(
        handles=list(handles),
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        fontsize=LEGEND_PT,
        title=title,
        title_fontsize=LEGEND_PT,
        frameon=False,
        alignment="left",
        borderaxespad=0.0,
    )
