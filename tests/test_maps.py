"""Cell grids and figures: sizes of the written PNGs, map furniture, k-means stability."""

from __future__ import annotations

import os
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from matplotlib.figure import Figure
from PIL import Image
from pyproj import CRS

from calliper_pipeline.cities.cells import (
    hexagon_grid,
    load_cells,
    load_map_layers,
    with_cell_columns,
)
from calliper_pipeline.cities.spec import CitySpec, ColumnMap, SnapshotSpec, get_city
from calliper_pipeline.maps import figures as maps
from calliper_pipeline.training.loop import EpochStats

BNG = CRS.from_epsg(27700)
ATTRIBUTION = "© OpenStreetMap contributors"


def _data_root() -> Path:
    env = os.environ.get("CALLIPER_DATA_ROOT")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


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


def _assert_map(fig: object, path: Path, width_px: int = maps.DEFAULT_WIDTH_PX) -> None:
    w, h = _png_size(path)
    assert w == width_px
    assert h == round(fig.get_figheight() * fig.dpi)  # type: ignore[attr-defined]
    texts = _texts(fig)
    assert "N" in texts
    assert any(t.endswith(" km") for t in texts)
    assert ATTRIBUTION in texts
    assert fig.axes[0].get_aspect() == 1.0  # type: ignore[attr-defined]


def test_hexagon_grid_geometry(cells: gpd.GeoDataFrame) -> None:
    assert 250 <= len(cells) <= 400
    assert list(cells.columns[:5]) == ["cell_id", "x_m", "y_m", "lon", "lat"]
    np.testing.assert_allclose(cells.geometry.area, 3 * np.sqrt(3) / 2 * (350 / np.sqrt(3)) ** 2)
    # vertical neighbours 350 m apart, the same as the GLA grid's 106,088 m² cells
    assert cells.geometry.area.iloc[0] == pytest.approx(106_088, abs=1)
    col = cells[np.isclose(cells["x_m"], cells["x_m"].min())]
    assert np.diff(np.sort(col["y_m"].to_numpy())) == pytest.approx(350.0)
    box = shapely.box(500_000, 170_000, 506_000, 175_000)
    assert box.difference(cells.geometry.union_all()).area < 1e-3  # float slivers only
    assert cells["lat"].between(51, 52).all() and cells["lon"].between(-2, 0).all()


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
    fig = maps.training_curve_figure(history, path=tmp_path / "curve.png")
    assert _png_size(tmp_path / "curve.png") == (1600, 900)
    labels = _legend_texts(fig)
    assert "best epoch 2 (val 6.600)" in labels
    with pytest.raises(ValueError):
        maps.training_curve_figure([])
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
    fig = maps.evaluation_table_figure(df, path=tmp_path / "table.png")
    w, h = _png_size(tmp_path / "table.png")
    assert w == 1600 and h == round(fig.get_figheight() * fig.dpi)
    cells_text = {c.get_text().get_text() for c in fig.axes[0].tables[0].get_celld().values()}
    assert {"encoder", "std", "0.3642", "21.65", "socioeconomic", ""} <= cells_text


def test_nice_scale_bar_lengths() -> None:
    assert maps._nice_length_m(58_000) == 10_000
    assert maps._nice_length_m(6_000) == 1_000
    assert maps._nice_length_m(900) == 200


def _city(tmp_path: Path, boundary: bool) -> CitySpec:
    snapshot = SnapshotSpec(path="x.csv", columns=ColumnMap(category="c", lon="lon", lat="lat"))
    if not boundary:
        return CitySpec(
            key="t", name="T", snapshot=snapshot, bounds_wgs84=(2.30, 48.84, 2.36, 48.88)
        )
    circle = shapely.Point(503_000, 172_500).buffer(2_000)
    gpd.GeoDataFrame(geometry=[circle], crs=BNG).to_file(tmp_path / "b.geojson")
    return CitySpec(
        key="t", name="T", snapshot=snapshot, metric_epsg=27700, boundary_path="b.geojson"
    )


def test_load_cells_generated_inside_boundary(tmp_path: Path) -> None:
    cells = load_cells(_city(tmp_path, boundary=True), tmp_path)
    circle = shapely.Point(503_000, 172_500).buffer(2_000)
    assert len(cells) == pytest.approx(circle.area / 106_088, rel=0.1)
    assert shapely.contains(circle, shapely.points(cells[["x_m", "y_m"]].to_numpy())).all()
    np.testing.assert_array_equal(cells["cell_id"], np.arange(len(cells)))
    layers = load_map_layers(_city(tmp_path, boundary=True), tmp_path)
    assert layers.boundary is not None and layers.overlay is None


def test_load_cells_from_wgs84_bounds_uses_utm(tmp_path: Path) -> None:
    cells = load_cells(_city(tmp_path, boundary=False), tmp_path)
    assert cells.crs.to_epsg() == 32631
    assert cells["lon"].between(2.29, 2.37).all() and cells["lat"].between(48.83, 48.89).all()


def test_london_hex_grid() -> None:
    root = _data_root()
    city = get_city("london")
    assert city.evaluation is not None and city.evaluation.hex_grid_path is not None
    if not city.resolve(root, city.evaluation.hex_grid_path).exists():  # type: ignore[union-attr]
        pytest.skip(f"London evaluation data not found under {root} (set CALLIPER_DATA_ROOT)")
    cells = load_cells(city, root)
    layers = load_map_layers(city, root)
    assert len(cells) == 15_041
    assert cells.crs.to_epsg() == 27700
    assert cells["Hex_ID"].is_unique
    min_x, min_y, max_x, max_y = layers.boundary.total_bounds  # type: ignore[union-attr]
    assert cells["x_m"].between(min_x, max_x).all() and cells["y_m"].between(min_y, max_y).all()
    np.testing.assert_allclose(cells["x_m"], cells["Centroid_X"], atol=0.01)
    assert cells["lon"].between(-0.52, 0.34).all() and cells["lat"].between(51.28, 51.70).all()
    assert layers.overlay is not None and layers.overlay_label == "Central Activities Zone"
    assert "OpenStreetMap" in layers.attribution
