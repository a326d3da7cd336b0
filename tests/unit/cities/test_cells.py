"""cities.cells: hexagon grids, cells inside a boundary or a WGS84 box, London's GLA grid."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import CRS

from calliper_pipeline.cities.cells import (
    city_cells,
    hexagon_grid,
    load_cells,
    load_map_layers,
    poi_outline_m,
    with_cell_columns,
)
from calliper_pipeline.cities.geo import project
from calliper_pipeline.cities.spec import CitySpec, ColumnMap, SnapshotSpec, get_city
from calliper_pipeline.errors import ConfigError
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


L_ORIGIN_M = (448_700.0, 5_409_900.0)  # inside the box's lower left corner, UTM 31N metres


def _l_shaped_pois(rng: np.random.Generator) -> pd.DataFrame:
    """POIs (WGS84) filling an L in the box of ``_city(boundary=False)``: the box's upper-right
    quarter (as a bay of sea would be) holds none."""
    xy = rng.uniform(0, 4_000, size=(3_000, 2))
    xy = xy[(xy[:, 0] < 2_000) | (xy[:, 1] < 2_000)] + L_ORIGIN_M
    lon, lat = project(xy[:, 0], xy[:, 1], 32631, 4326)
    return pd.DataFrame({"lon": lon, "lat": lat})


def test_bounds_only_city_is_clipped_to_the_pois_outline(tmp_path: Path) -> None:
    city = _city(tmp_path, boundary=False)
    pois = _l_shaped_pois(np.random.default_rng(0))
    box_cells = load_cells(city, tmp_path)
    cells, layers = city_cells(city, tmp_path, 32631, pois)
    hull = poi_outline_m(pois["lon"].to_numpy(), pois["lat"].to_numpy(), 32631)
    centres = shapely.points(cells[["x_m", "y_m"]].to_numpy())
    assert shapely.contains(hull, centres).all()  # no cell outside the outline
    assert cells.geometry.intersects(hull).all()
    assert 0 < len(cells) < 0.7 * len(box_cells)  # the L: 12 km² of the box's 20 km²
    # the concave hull follows the L: the empty quarter has (almost) no cell
    x0, y0 = L_ORIGIN_M
    empty_quarter = shapely.box(x0 + 2_400, y0 + 2_400, x0 + 4_000, y0 + 4_000)
    assert shapely.contains(empty_quarter, centres).sum() <= 2
    assert len(cells) == pytest.approx(hull.area / 106_088, rel=0.15)
    np.testing.assert_array_equal(cells["cell_id"], np.arange(len(cells)))
    assert layers.boundary is not None and layers.boundary.geometry.iloc[0].equals(hull)
    assert layers.boundary_label == "POI outline (concave hull)"
    # without POIs (or with a boundary file) nothing is clipped
    assert len(city_cells(city, tmp_path, 32631, None)[0]) == len(box_cells)
    with_boundary = _city(tmp_path, boundary=True)
    assert len(city_cells(with_boundary, tmp_path, 27700, pois)[0]) == len(
        load_cells(with_boundary, tmp_path)
    )


def test_poi_outline_needs_an_area() -> None:
    convex = poi_outline_m(np.array([2.30, 2.36, 2.33]), np.array([48.84, 48.84, 48.88]), 32631)
    assert isinstance(convex, shapely.Polygon) and convex.area > 1e6  # a ~4.4 km x 4.4 km triangle
    with pytest.raises(ConfigError, match="do not span an area"):
        poi_outline_m(np.full(5, 2.31), np.full(5, 48.85), 32631)  # one place, five times
    with pytest.raises(ConfigError, match="2 POIs do not"):  # the NaN one is left out
        poi_outline_m(np.array([2.30, np.nan, 2.32]), np.array([48.84, 48.85, 48.86]), 32631)


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
