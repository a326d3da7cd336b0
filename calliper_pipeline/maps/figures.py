"""Figures: embedding maps of a city's cells, retrieval heatmaps, training curve, results table.

Every map has a title, a legend or colour bar, a scale bar in km, a north arrow, the data
attribution at the bottom and equal aspect in the cells' metric CRS. Figures are built on the
Agg canvas directly (no pyplot, no global figure registry, no display): a returned figure is
freed when dropped. Cells are drawn as one ``PolyCollection`` (15k hexagons in well under a
second). Sizes are fixed in pixels (default 1600 wide at 160 dpi) and saved without tight
cropping, so a PNG is exactly ``width_px`` wide.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.colors import Normalize, to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.text import Text
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from threadpoolctl import threadpool_limits

from calliper_pipeline.constants import COL_X, COL_Y

if TYPE_CHECKING:  # only for annotations: maps do not need torch or the model at import
    from calliper_pipeline.training.loop import EpochStats

DEFAULT_WIDTH_PX = 1600
DEFAULT_DPI = 160
# Okabe-Ito, colour-blind safe, black left out (outlines are black); tab20 beyond 7 clusters.
CLUSTER_COLOURS = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")
_TITLE_PT, _SUBTITLE_PT, _LEGEND_PT, _LABEL_PT, _ATTRIB_PT = 16, 11, 11, 10, 8.5
_STAR = "#0072B2"
_HALO: list[patheffects.AbstractPathEffect] = [
    patheffects.withStroke(linewidth=3, foreground="white")
]
# Map layout in inches: title band on top, attribution band at the bottom, legend column right.
_TOP_IN, _BOTTOM_IN, _LEFT_IN, _RIGHT_IN = 0.85, 0.45, 0.15, 2.6


def _new_figure(width_px: int, height_px: int, dpi: int) -> Figure:
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


def _finish(fig: Figure, path: Path | str | None) -> Figure:
    if path is not None:
        save_figure(fig, path)
    return fig


# ----------------------------------------------------------------------------- embeddings


def _normalised(embeddings: np.ndarray, n_cells: int | None = None) -> np.ndarray:
    emb = np.asarray(embeddings, dtype=np.float64)
    if emb.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (cells, dim), got shape {emb.shape}")
    if n_cells is not None and len(emb) != n_cells:
        raise ValueError(f"{len(emb)} embeddings for {n_cells} cells")
    if not np.isfinite(emb).all():
        raise ValueError("embeddings contain NaN or inf")
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def kmeans_labels(
    embeddings: np.ndarray, k: int = 4, seed: int = 42, n_threads: int | None = 1
) -> np.ndarray:
    """k-means of L2-normalised embeddings, as the paper's Figure 3 (``n_init=10``).

    Clusters are renumbered by size, largest first (ties by KMeans' own order), so colours do not
    depend on KMeans' arbitrary numbering; the partition itself is sklearn's.

    ``n_threads`` caps OpenMP/BLAS threads during the fit (None: the libraries' default). One
    thread is the default because KMeans' OpenMP loop busy-waits: on a shared or oversubscribed
    machine (parallel Dagster steps, pytest) it ran 5-50x slower than on one thread.

    Returns:
        (C,) int64 labels in ``0..k-1``.
    """
    emb = _normalised(embeddings)
    with threadpool_limits(limits=n_threads):
        raw = KMeans(n_clusters=k, random_state=seed, n_init=10).fit_predict(emb)
    sizes = np.bincount(raw, minlength=k)
    order = np.argsort(-sizes, kind="stable")
    relabel = np.empty(k, dtype=np.int64)
    relabel[order] = np.arange(k)
    return relabel[raw]


def pca_rgb(embeddings: np.ndarray, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """First three principal components of L2-normalised embeddings, min-max scaled to RGB.

    Returns:
        ((C, 3) floats in [0, 1], (3,) explained variance ratios). A constant component is grey.
    """
    emb = _normalised(embeddings)
    n_comp = min(3, emb.shape[1], len(emb))
    pca = PCA(n_components=n_comp, random_state=seed)
    comps = pca.fit_transform(emb)
    rgb = np.full((len(emb), 3), 0.5)
    lo, hi = comps.min(axis=0), comps.max(axis=0)
    span = hi - lo
    ok = span > 1e-12
    rgb[:, :n_comp][:, ok] = (comps[:, ok] - lo[ok]) / span[ok]
    var = np.zeros(3)
    var[:n_comp] = pca.explained_variance_ratio_
    return rgb, var


# ----------------------------------------------------------------------------- map furniture


def _cell_polygons(cells: gpd.GeoDataFrame) -> tuple[list[np.ndarray], np.ndarray]:
    """Exterior rings of every cell polygon part, and the row each part belongs to."""
    parts, row = shapely.get_parts(cells.geometry.to_numpy(), return_index=True)
    keep = ~shapely.is_empty(parts)
    parts, row = parts[keep], row[keep]
    coords, ring = shapely.get_coordinates(shapely.get_exterior_ring(parts), return_index=True)
    verts = np.split(coords, np.flatnonzero(np.diff(ring)) + 1) if len(coords) else []
    return verts, row


def _draw_cells(ax: Axes, cells: gpd.GeoDataFrame, colours: np.ndarray) -> PolyCollection:
    """One PolyCollection of all cells; edges in the face colour hide antialiasing seams."""
    verts, row = _cell_polygons(cells)
    coll = PolyCollection(
        verts, facecolors=colours[row], edgecolors=colours[row], linewidths=0.3, zorder=1
    )
    ax.add_collection(coll)
    return coll


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
            fontsize=_LABEL_PT,
            path_effects=_HALO,
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
        path_effects=_HALO,
        zorder=7,
    )


def _outline_handles(
    ax: Axes,
    boundary: gpd.GeoDataFrame | gpd.GeoSeries | None,
    overlay: gpd.GeoDataFrame | gpd.GeoSeries | None,
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


def _shrink_to_fit(text: Text, max_width_px: float, min_pt: float = 9) -> None:
    """Lower the font size of a one-line text until it is at most ``max_width_px`` wide."""
    renderer = text.get_figure(root=True).canvas.get_renderer()  # type: ignore[union-attr,attr-defined]
    size = float(text.get_fontsize())
    while text.get_window_extent(renderer).width > max_width_px and size > min_pt:
        size -= 0.5
        text.set_fontsize(size)


def _map_axes(
    cells: gpd.GeoDataFrame,
    boundary: gpd.GeoDataFrame | gpd.GeoSeries | None,
    title: str,
    subtitle: str | None,
    attribution: str,
    width_px: int,
    dpi: int,
) -> tuple[Figure, Axes]:
    """A figure sized to the data's aspect, with title, attribution, scale bar and north arrow."""
    if cells.crs is not None and cells.crs.is_geographic:
        raise ValueError("maps need cells in a metric CRS (metres), not degrees")
    bounds = np.asarray(cells.total_bounds, dtype=np.float64)
    if boundary is not None and len(boundary):
        b = np.asarray(boundary.total_bounds, dtype=np.float64)
        bounds = np.array(
            [min(bounds[0], b[0]), min(bounds[1], b[1]), max(bounds[2], b[2]), max(bounds[3], b[3])]
        )
    pad = 0.03 * max(bounds[2] - bounds[0], bounds[3] - bounds[1])
    x0, y0, x1, y1 = bounds[0] - pad, bounds[1] - pad, bounds[2] + pad, bounds[3] + pad
    width_in = width_px / dpi
    map_w_in = width_in - _LEFT_IN - _RIGHT_IN
    map_h_in = map_w_in * (y1 - y0) / (x1 - x0)
    height_px = round((map_h_in + _TOP_IN + _BOTTOM_IN) * dpi)
    fig = _new_figure(width_px, height_px, dpi)
    height_in = height_px / dpi
    ax = fig.add_axes(
        (_LEFT_IN / width_in, _BOTTOM_IN / height_in, map_w_in / width_in, map_h_in / height_in)
    )
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("0.7")
    line_px = width_px - 2 * _LEFT_IN * dpi
    head = fig.text(
        _LEFT_IN / width_in,
        1 - 0.12 / height_in,
        title,
        ha="left",
        va="top",
        fontsize=_TITLE_PT,
        fontweight="bold",
    )
    _shrink_to_fit(head, line_px)
    if subtitle:
        sub = fig.text(
            _LEFT_IN / width_in,
            1 - 0.5 / height_in,
            subtitle,
            ha="left",
            va="top",
            fontsize=_SUBTITLE_PT,
            color="0.25",
        )
        _shrink_to_fit(sub, line_px)
    if attribution:
        attrib = fig.text(
            _LEFT_IN / width_in,
            0.12 / height_in,
            attribution,
            ha="left",
            va="bottom",
            fontsize=_ATTRIB_PT,
            color="0.3",
        )
        _shrink_to_fit(attrib, line_px - 2.2 * dpi, min_pt=6)  # room for the CRS note
    if cells.crs is not None:
        fig.text(
            1 - 0.15 / width_in,
            0.12 / height_in,
            f"CRS: {cells.crs.to_string()}",
            ha="right",
            va="bottom",
            fontsize=_ATTRIB_PT,
            color="0.3",
        )
    _scale_bar(ax)
    _north_arrow(ax)
    return fig, ax


def _side_legend(ax: Axes, handles: Sequence[Any], title: str | None = None) -> None:
    ax.legend(
        handles=list(handles),
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        fontsize=_LEGEND_PT,
        title=title,
        title_fontsize=_LEGEND_PT,
        frameon=False,
        alignment="left",
        borderaxespad=0.0,
    )


# ----------------------------------------------------------------------------- maps


def cluster_map(
    cells: gpd.GeoDataFrame,
    embeddings: np.ndarray,
    k: int = 4,
    seed: int = 42,
    boundary: gpd.GeoDataFrame | gpd.GeoSeries | None = None,
    overlay: gpd.GeoDataFrame | gpd.GeoSeries | None = None,
    overlay_label: str | None = None,
    title: str = "Location embeddings: k-means clusters",
    attribution: str = "",
    *,
    labels: np.ndarray | None = None,
    boundary_label: str = "City boundary",
    path: Path | str | None = None,
    width_px: int = DEFAULT_WIDTH_PX,
    dpi: int = DEFAULT_DPI,
) -> Figure:
    """Cells coloured by k-means cluster of their embeddings (the paper's Figure 3).

    Args:
        cells: (C rows) cell polygons in a metric CRS (see ``grid.load_cells``).
        embeddings: (C, D) location embeddings in the same row order (normalised here).
        labels: precomputed :func:`kmeans_labels` (then ``k``/``seed`` only name the subtitle).
        path: when given, the PNG is written there.
    """
    emb = _normalised(embeddings, len(cells))
    labels = kmeans_labels(emb, k, seed) if labels is None else np.asarray(labels, np.int64)
    if labels.shape != (len(cells),):
        raise ValueError(f"labels must have shape ({len(cells)},), got {labels.shape}")
    n_clusters = int(labels.max()) + 1 if len(labels) else k
    palette: Sequence[Any] = (
        CLUSTER_COLOURS if n_clusters <= len(CLUSTER_COLOURS) else _tab20(n_clusters)
    )
    rgba = np.array([to_rgba(palette[i]) for i in range(n_clusters)])
    subtitle = (
        f"k-means (k={n_clusters}, random_state={seed}, n_init=10) of L2-normalised "
        f"embeddings of {len(cells):,} cells"
    )
    fig, ax = _map_axes(cells, boundary, title, subtitle, attribution, width_px, dpi)
    _draw_cells(ax, cells, rgba[labels])
    sizes = np.bincount(labels, minlength=n_clusters)
    handles: list[Any] = [
        Patch(facecolor=rgba[i], edgecolor="0.3", label=f"Cluster {i + 1} ({sizes[i]:,} cells)")
        for i in range(n_clusters)
    ]
    handles += _outline_handles(ax, boundary, overlay, overlay_label, boundary_label)
    _side_legend(ax, handles, title="Cluster (by size)")
    return _finish(fig, path)


def _tab20(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return [cmap(i % 20) for i in range(n)]


def pca_colour_map(
    cells: gpd.GeoDataFrame,
    embeddings: np.ndarray,
    boundary: gpd.GeoDataFrame | gpd.GeoSeries | None = None,
    overlay: gpd.GeoDataFrame | gpd.GeoSeries | None = None,
    overlay_label: str | None = None,
    title: str = "Location embeddings: first three principal components as colour",
    attribution: str = "",
    *,
    boundary_label: str = "City boundary",
    path: Path | str | None = None,
    width_px: int = DEFAULT_WIDTH_PX,
    dpi: int = DEFAULT_DPI,
) -> Figure:
    """Cells coloured by PCs 1-3 of their L2-normalised embeddings (min-max scaled to R, G, B).

    Similar colours mean similar embeddings; the legend gives each PC's explained variance.
    """
    rgb, var = pca_rgb(_normalised(embeddings, len(cells)))
    subtitle = (
        f"colour = first 3 principal components of {len(cells):,} cell embeddings "
        f"(together {100 * var.sum():.1f} % of variance)"
    )
    fig, ax = _map_axes(cells, boundary, title, subtitle, attribution, width_px, dpi)
    _draw_cells(ax, cells, np.column_stack([rgb, np.ones(len(rgb))]))
    handles: list[Any] = [
        Patch(facecolor=c, edgecolor="0.3", label=f"PC{i + 1} → {name} ({100 * v:.1f} %)")
        for i, (c, name, v) in enumerate(
            zip(("red", "green", "blue"), ("red", "green", "blue"), var, strict=True)
        )
    ]
    handles += _outline_handles(ax, boundary, overlay, overlay_label, boundary_label)
    _side_legend(ax, handles, title="Colour = PCs 1-3 → RGB\n(% of variance explained)")
    return _finish(fig, path)


def retrieval_heatmap(
    cells: gpd.GeoDataFrame,
    scores: np.ndarray,
    query: str,
    top_k: int = 20,
    boundary: gpd.GeoDataFrame | gpd.GeoSeries | None = None,
    overlay: gpd.GeoDataFrame | gpd.GeoSeries | None = None,
    overlay_label: str | None = None,
    title: str | None = None,
    attribution: str = "",
    *,
    boundary_label: str = "City boundary",
    cmap: str = "magma",
    path: Path | str | None = None,
    width_px: int = DEFAULT_WIDTH_PX,
    dpi: int = DEFAULT_DPI,
) -> Figure:
    """Cells coloured by cosine similarity to a text query; the ``top_k`` best cells ringed."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(cells),):
        raise ValueError(f"scores must have shape ({len(cells)},), got {scores.shape}")
    heading = title or f"Query: “{textwrap.shorten(query, 110, placeholder=' …')}”"
    subtitle = (
        "Text-to-location retrieval: each cell coloured by the cosine similarity of its "
        f"location embedding to the query; top {top_k} cells ringed"
    )
    fig, ax = _map_axes(cells, boundary, heading, subtitle, attribution, width_px, dpi)
    finite = scores[np.isfinite(scores)]
    norm = Normalize(vmin=float(finite.min()), vmax=float(finite.max()))
    mappable = ScalarMappable(norm=norm, cmap=cmap)
    _draw_cells(ax, cells, mappable.to_rgba(scores))
    top = np.argsort(-scores, kind="stable")[: max(top_k, 0)]
    x, y = cells[COL_X].to_numpy()[top], cells[COL_Y].to_numpy()[top]
    # Top cells are the brightest of the colour map: black rings with a white halo, blue star.
    rings = ax.scatter(x, y, s=110, facecolors="none", edgecolors="black", linewidths=1.8, zorder=5)
    ring_halo: list[patheffects.AbstractPathEffect] = [
        patheffects.withStroke(linewidth=4, foreground="white")
    ]
    rings.set_path_effects(ring_halo)
    ax.scatter(x[:1], y[:1], s=420, marker="*", c=_STAR, edgecolors="white", lw=1.2, zorder=6)
    ring_handle = Line2D([], [], marker="o", ls="", ms=11, mfc="none", mec="black", mew=1.8)
    handles: list[Any] = [
        Line2D([], [], marker="*", ls="", ms=18, mfc=_STAR, mec="white", label="best cell"),
        ring_handle,
    ]
    ring_handle.set_label(f"top {top_k} cells")
    handles += _outline_handles(ax, boundary, overlay, overlay_label, boundary_label)
    _side_legend(ax, handles)
    pos = ax.get_position()
    cax = fig.add_axes((pos.x1 + 0.03, pos.y0 + 0.08 * pos.height, 0.025, 0.5 * pos.height))
    bar = fig.colorbar(mappable, cax=cax)
    bar.set_label("cosine similarity", fontsize=_LEGEND_PT)
    bar.ax.tick_params(labelsize=_LABEL_PT)
    return _finish(fig, path)


# ----------------------------------------------------------------------------- charts


def training_curve_figure(
    history: Sequence[EpochStats],
    title: str = "Training curve",
    *,
    path: Path | str | None = None,
    width_px: int = DEFAULT_WIDTH_PX,
    height_px: int = 900,
    dpi: int = DEFAULT_DPI,
) -> Figure:
    """Train and validation loss per epoch, temperature on a twin axis, best epoch marked.

    The best epoch is the last one flagged ``is_best`` (the weights kept), else the lowest
    validation loss.
    """
    if not history:
        raise ValueError("history is empty")
    epochs = np.array([h.epoch for h in history])
    train = np.array([h.train_loss for h in history])
    val = np.array([h.val_loss for h in history])
    temp = np.array([h.temperature for h in history])
    flagged = [i for i, h in enumerate(history) if h.is_best]
    best = flagged[-1] if flagged else int(np.nanargmin(val))
    fig = _new_figure(width_px, height_px, dpi)
    ax = fig.add_axes((0.08, 0.13, 0.80, 0.76))
    marker = "o" if len(history) <= 40 else None
    ax.plot(epochs, train, marker=marker, color="#0072B2", lw=2, label="train loss")
    ax.plot(epochs, val, marker=marker, color="#D55E00", lw=2, label="validation loss")
    ax.axvline(epochs[best], color="0.5", ls=":", lw=1.5)
    ax.plot(
        [epochs[best]],
        [val[best]],
        marker="*",
        ms=18,
        color="#D55E00",
        mec="black",
        ls="",
        label=f"best epoch {epochs[best]} (val {val[best]:.3f})",
    )
    ax.set_xlabel("epoch", fontsize=_LEGEND_PT)
    ax.set_ylabel("symmetric InfoNCE loss", fontsize=_LEGEND_PT)
    ax.tick_params(labelsize=_LABEL_PT)
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(epochs, temp, color="#009E73", lw=1.8, ls="--", label="temperature (right axis)")
    ax2.set_ylabel("temperature  1 / exp(logit_scale)", fontsize=_LEGEND_PT, color="#009E73")
    ax2.tick_params(labelsize=_LABEL_PT, colors="#009E73")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=_LEGEND_PT, loc="best", framealpha=0.9)
    fig.text(0.08, 0.96, title, ha="left", va="top", fontsize=_TITLE_PT, fontweight="bold")
    return _finish(fig, path)


def _cell_text(value: Any) -> str:
    if not isinstance(value, float | np.floating):
        return str(value)
    x = float(value)
    return "" if math.isnan(x) else f"{x:.4g}" if abs(x) < 1e5 else f"{x:,.0f}"


def evaluation_table_figure(
    df: pd.DataFrame,
    title: str = "Evaluation results",
    *,
    path: Path | str | None = None,
    width_px: int = DEFAULT_WIDTH_PX,
    dpi: int = DEFAULT_DPI,
) -> Figure:
    """The rows of ``df`` as a rendered table (all its columns; floats to 4 significant digits)."""
    text = [[_cell_text(v) for v in row] for row in df.itertuples(index=False)]
    columns = [str(c) for c in df.columns]
    row_in, head_in, foot_in = 0.34, 0.7, 0.2
    height_px = round((head_in + row_in * (len(text) + 1) + foot_in) * dpi)
    fig = _new_figure(width_px, height_px, dpi)
    height_in = height_px / dpi
    ax = fig.add_axes((0.02, foot_in / height_in, 0.96, 1 - (head_in + foot_in) / height_in))
    ax.set_axis_off()
    fig.text(
        0.02,
        1 - 0.15 / height_in,
        title,
        ha="left",
        va="top",
        fontsize=_TITLE_PT,
        fontweight="bold",
    )
    if not columns:
        return _finish(fig, path)
    widths = np.array(
        [max([len(c)] + [len(r[j]) for r in text]) + 2 for j, c in enumerate(columns)], float
    )
    table = ax.table(
        cellText=text or None,
        colLabels=columns,
        colWidths=list(widths / widths.sum()),
        loc="upper center",
        cellLoc="left",
        colLoc="left",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(_LEGEND_PT)
    for (r, _c), cell in table.get_celld().items():
        cell.set_height(row_in / (height_in - head_in - foot_in))
        cell.set_edgecolor("0.8")
        if r == 0:
            cell.set_facecolor("#E8EEF4")
            cell.get_text().set_fontweight("bold")
        elif r % 2 == 0:
            cell.set_facecolor("#F7F7F7")
    return _finish(fig, path)
