"""cities.cells: hexagon grids, cells inside a boundary or a WGS84 box, London's GLA grid."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from pyproj import CRS

from calliper_pipeline.cities.cells import (
    hexagon_grid,
    load_cells,
    load_map_layers,
    with_cell_columns,
)
from calliper_pipeline.cities.spec import CitySpec, ColumnMap, SnapshotSpec, get_city
from tests.support.paths import data_root

BNG = CRS.from_epsg(27700)


@pytest.fixture(scope="module")
def cells() -> gpd.GeoDataFrame:
    grid = hexagon_grid((500_000.0, 170_000.0, 506_000.0, 175_000.0), 350.0, BNG)
    return with_cell_columns(grid.drop(columns=["cell_id", "x_m", "y_m"]))


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
    root = data_root()
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
