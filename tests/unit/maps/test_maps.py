"""Figures: sizes of the written PNGs, map furniture, k-means stability."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from matplotlib.figure import Figure
from PIL import Image
from pyproj import CRS

from calliper_pipeline.cities.cells import hexagon_grid, with_cell_columns
from calliper_pipeline.maps import cartography, charts
from calliper_pipeline.maps import embedding_maps as maps
from calliper_pipeline.training.checkpoints import EpochStats

BNG = CRS.from_epsg(27700)
ATTRIBUTION = "© OpenStreetMap contributors"


@pytest.fixture(scope="module")
def cells() -> gpd.GeoDataFrame:
    grid = hexagon_grid((500_000.0, 170_000.0, 506_000.0, 175_000.0), 350.0, BNG)
    return with_cell_columns(grid.drop(columns=["cell_id", "x_m", "y_m"]))


@pytest.fixture(scope="module")
def layers(cells: gpd.GeoDataFrame) -> dict[str, object]:
    centre = shapely.Point(503_000, 172_500)
    boundary = gpd.GeoDataFrame(geometry=[centre.buffer(2_800)], crs=BNG)
    overlay = gpd.GeoDataFrame(geometry=[centre.buffer(700)], crs=BNG)
    return {
        "boundary": boundary,
        "overlay": overlay,
        "overlay_label": "Centre",
        "attribution": ATTRIBUTION,
    }


def _embeddings(cells: gpd.GeoDataFrame) -> np.ndarray:
    x = (cells["x_m"].to_numpy() - 503_000) / 2_000
    y = (cells["y_m"].to_numpy() - 172_500) / 2_000
    return np.stack([np.cos(x), np.sin(y), x * y, x + 0.1, y - 0.2, np.ones_like(x)], axis=1)


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


def _texts(fig: object) -> list[str]:
    out = [t.get_text() for t in fig.texts]  # type: ignore[attr-defined]
    for ax in fig.axes:  # type: ignore[attr-defined]
        out += [t.get_text() for t in ax.texts]
    return out


def _legend_texts(fig: Figure) -> list[str]:
    legend = fig.axes[0].get_legend()
    assert legend is not None
    return [t.get_text() for t in legend.get_texts()]


def _assert_map(fig: object, path: Path, width_px: int = cartography.DEFAULT_WIDTH_PX) -> None:
    w, h = _png_size(path)
    assert w == width_px
    assert h == round(fig.get_figheight() * fig.dpi)  # type: ignore[attr-defined]
    texts = _texts(fig)
    assert "N" in texts
    assert any(t.endswith(" km") for t in texts)
    assert ATTRIBUTION in texts
    assert fig.axes[0].get_aspect() == 1.0  # type: ignore[attr-defined]
    ax = fig.axes[0]  # type: ignore[attr-defined]
    assert ax.get_xlabel() == "easting (km, EPSG:27700)"
    assert ax.get_ylabel() == "northing (km, EPSG:27700)"
    # ticks in km of British National Grid: the cells span x = 500-506 km
    assert ax.xaxis.get_major_formatter()(503_000.0, 0) == "503"
    assert 497_000 < ax.get_xlim()[0] < 500_000 and 506_000 < ax.get_xlim()[1] < 509_000


def test_kmeans_labels_stable_and_ordered_by_size(cells: gpd.GeoDataFrame) -> None:
    emb = _embeddings(cells)
    a = maps.kmeans_labels(emb, k=4, seed=42)
    b = maps.kmeans_labels(emb, k=4, seed=42)
    np.testing.assert_array_equal(a, b)
    sizes = np.bincount(a, minlength=4)
    assert set(np.unique(a)) == {0, 1, 2, 3}
    assert (np.diff(sizes) <= 0).all()


def test_cluster_map(tmp_path: Path, cells: gpd.GeoDataFrame, layers: dict) -> None:
    path = tmp_path / "sub" / "cluster.png"
    fig = maps.cluster_map(cells, _embeddings(cells), k=4, seed=42, path=path, **layers)
    _assert_map(fig, path)
    labels = _legend_texts(fig)
    assert sum(t.startswith("Cluster ") for t in labels) == 4
    assert "Centre" in labels


def test_a_narrow_map_keeps_room_for_the_map(tmp_path: Path, cells: gpd.GeoDataFrame) -> None:
    path = tmp_path / "narrow.png"
    fig = maps.cluster_map(cells, _embeddings(cells), k=3, path=path, width_px=600)
    assert _png_size(path)[0] == 600 and fig.dpi == 100  # 6 inches at 100 dpi
    map_px = fig.axes[0].get_position().width * 600
    assert map_px >= 0.4 * 600  # the legend column and the km axis labels take the rest


def test_pca_colour_map(tmp_path: Path, cells: gpd.GeoDataFrame, layers: dict) -> None:
    path = tmp_path / "pca.png"
    fig = maps.pca_colour_map(cells, _embeddings(cells), path=path, width_px=1200, **layers)
    _assert_map(fig, path, width_px=1200)
    legend = " ".join(_legend_texts(fig))
    assert "PC1" in legend and "%" in legend
    rgb, var = maps.pca_rgb(_embeddings(cells))
    assert rgb.min() == 0.0 and rgb.max() == 1.0
    assert (np.diff(var) <= 1e-12).all() and 0 < var.sum() <= 1


def test_retrieval_heatmap(tmp_path: Path, cells: gpd.GeoDataFrame, layers: dict) -> None:
    path = tmp_path / "heat.png"
    scores = _embeddings(cells)[:, 0]
    fig = maps.retrieval_heatmap(cells, scores, "A place of cafe", top_k=5, path=path, **layers)
    _assert_map(fig, path)
    assert len(fig.axes) == 2  # the map and its colour bar
    with pytest.raises(ValueError):
        maps.retrieval_heatmap(cells, scores[:-1], "q")
    with pytest.raises(ValueError, match="metric CRS"):
        maps.retrieval_heatmap(cells.to_crs(4326), scores, "q")


def test_training_curve_and_table(tmp_path: Path) -> None:
    history = [
        EpochStats(
            epoch=e,
            train_loss=7 - e * 0.3,
            val_loss=v,
            temperature=0.07 - e * 0.002,
            seconds=1.0,
            is_best=b,
        )
        for e, v, b in [(1, 6.9, True), (2, 6.6, True), (3, 6.7, False), (4, 6.65, False)]
    ]
    fig = charts.training_curve_figure(history, path=tmp_path / "curve.png")
    assert _png_size(tmp_path / "curve.png") == (1600, 900)
    labels = _legend_texts(fig)
    assert "best epoch 2 (val 6.600)" in labels
    with pytest.raises(ValueError):
        charts.training_curve_figure([])
    df = pd.DataFrame(
        {
            "encoder": ["calliper", "calliper"],
            "task": ["landuse", "socioeconomic"],
            "probe": ["linear", "mlp"],
            "metric": ["f1", "l1"],
            "mean": [0.3642, 21.6512],
            "std": [0.016, np.nan],
        }
    )
    fig = charts.evaluation_table_figure(df, path=tmp_path / "table.png")
    w, h = _png_size(tmp_path / "table.png")
    assert w == 1600 and h == round(fig.get_figheight() * fig.dpi)
    cells_text = {c.get_text().get_text() for c in fig.axes[0].tables[0].get_celld().values()}
    assert {"encoder", "std", "0.3642", "21.65", "socioeconomic", ""} <= cells_text


def test_nice_scale_bar_lengths() -> None:
    assert cartography._nice_length_m(58_000) == 10_000
    assert cartography._nice_length_m(6_000) == 1_000
    assert cartography._nice_length_m(900) == 200
