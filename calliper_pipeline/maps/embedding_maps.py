"""Maps of location embeddings over a city's cells: k-means clusters (the paper's Figure 3), the
first three principal components as colour, and text-to-location retrieval heatmaps.

Every map has a title, a legend or colour bar, a scale bar in km, a north arrow, the data
attribution at the bottom and equal aspect in the cells' metric CRS (see
:mod:`calliper_pipeline.maps.cartography`). Cells are drawn as one ``PolyCollection`` (15k
hexagons in well under a second).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
from matplotlib import patheffects
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize, to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from threadpoolctl import threadpool_limits

from calliper_pipeline.constants import COL_X, COL_Y
from calliper_pipeline.maps.cartography import (
    DEFAULT_DPI,
    DEFAULT_WIDTH_PX,
    LABEL_PT,
    LEGEND_PT,
    Layer,
    draw_cells,
    finish,
    map_axes,
    outline_handles,
    side_legend,
)

# Okabe-Ito, colour-blind safe, black left out (outlines are black); tab20 beyond 7 clusters.
CLUSTER_COLOURS = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")
_STAR = "#0072B2"


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
        from sklearn.cluster import KMeans  # sklearn: imported when a map is drawn

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
    from sklearn.decomposition import PCA

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


# ----------------------------------------------------------------------------- maps


def cluster_map(
    cells: gpd.GeoDataFrame,
    embeddings: np.ndarray,
    k: int = 4,
    seed: int = 42,
    boundary: Layer | None = None,
    overlay: Layer | None = None,
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
    fig, ax = map_axes(cells, boundary, title, subtitle, attribution, width_px, dpi)
    draw_cells(ax, cells, rgba[labels])
    sizes = np.bincount(labels, minlength=n_clusters)
    handles: list[Any] = [
        Patch(facecolor=rgba[i], edgecolor="0.3", label=f"Cluster {i + 1} ({sizes[i]:,} cells)")
        for i in range(n_clusters)
    ]
    handles += outline_handles(ax, boundary, overlay, overlay_label, boundary_label)
    side_legend(ax, handles, title="Cluster (by size)")
    return finish(fig, path)


def _tab20(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return [cmap(i % 20) for i in range(n)]


def pca_colour_map(
    cells: gpd.GeoDataFrame,
    embeddings: np.ndarray,
    boundary: Layer | None = None,
    overlay: Layer | None = None,
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
    fig, ax = map_axes(cells, boundary, title, subtitle, attribution, width_px, dpi)
    draw_cells(ax, cells, np.column_stack([rgb, np.ones(len(rgb))]))
    handles: list[Any] = [
        Patch(facecolor=c, edgecolor="0.3", label=f"PC{i + 1} → {name} ({100 * v:.1f} %)")
        for i, (c, name, v) in enumerate(
            zip(("red", "green", "blue"), ("red", "green", "blue"), var, strict=True)
        )
    ]
    handles += outline_handles(ax, boundary, overlay, overlay_label, boundary_label)
    side_legend(ax, handles, title="Colour = PCs 1-3 → RGB\n(% of variance explained)")
    return finish(fig, path)


def retrieval_heatmap(
    cells: gpd.GeoDataFrame,
    scores: np.ndarray,
    query: str,
    top_k: int = 20,
    boundary: Layer | None = None,
    overlay: Layer | None = None,
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
    fig, ax = map_axes(cells, boundary, heading, subtitle, attribution, width_px, dpi)
    finite = scores[np.isfinite(scores)]
    norm = Normalize(vmin=float(finite.min()), vmax=float(finite.max()))
    mappable = ScalarMappable(norm=norm, cmap=cmap)
    draw_cells(ax, cells, mappable.to_rgba(scores))
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
    handles += outline_handles(ax, boundary, overlay, overlay_label, boundary_label)
    side_legend(ax, handles)
    pos = ax.get_position()
    cax = fig.add_axes((pos.x1 + 0.03, pos.y0 + 0.08 * pos.height, 0.025, 0.5 * pos.height))
    bar = fig.colorbar(mappable, cax=cax)
    bar.set_label("cosine similarity", fontsize=LEGEND_PT)
    bar.ax.tick_params(labelsize=LABEL_PT)
    return finish(fig, path)
