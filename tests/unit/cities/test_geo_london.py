"""cities.geo on a known London point (the SOURCE.md sample row): projection and city bounds."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import Point

from calliper_pipeline.cities.geo import city_bounds_m, project
from calliper_pipeline.cities.spec import CitySpec, ColumnMap, SnapshotSpec
from calliper_pipeline.errors import ConfigError

# The SOURCE.md sample row "Scala": WGS84 and its British National Grid coordinates.
SCALA_LONLAT = (-0.1190473, 51.5301846)
SCALA_BNG = (530571.0, 182929.4)
LONDON_BOUNDS_WGS84 = (-0.6, 51.2, 0.4, 51.8)
COLUMNS = ColumnMap(poi_id="id", name="name", category="cat", group="grp", lon="lon", lat="lat")


def _london_like(columns: ColumnMap = COLUMNS, **kwargs) -> CitySpec:
    snapshot = SnapshotSpec(path="unused", columns=columns)
    kw = {"metric_epsg": 27700, "bounds_wgs84": LONDON_BOUNDS_WGS84, **kwargs}
    return CitySpec(key="ldn", name="London-like", snapshot=snapshot, **kw)


def test_projection_of_a_known_london_point():
    x, y = project(np.array([SCALA_LONLAT[0]]), np.array([SCALA_LONLAT[1]]), 4326, 27700)
    assert abs(x[0] - SCALA_BNG[0]) < 1.0 and abs(y[0] - SCALA_BNG[1]) < 1.0


def test_city_bounds_from_wgs84_box_enclose_the_box():
    bounds = city_bounds_m(_london_like(), Path("/nonexistent"), 27700)
    xs, ys = project(
        np.array([-0.6, 0.4, -0.6, 0.4]), np.array([51.2, 51.2, 51.8, 51.8]), 4326, 27700
    )
    assert bounds[0] <= xs.min() and bounds[2] >= xs.max()
    assert bounds[1] <= ys.min() and bounds[3] >= ys.max()


def test_city_bounds_need_a_boundary_or_a_box(tmp_path):
    with pytest.raises(ConfigError):
        city_bounds_m(_london_like(bounds_wgs84=None), tmp_path, 27700)
    with pytest.raises(FileNotFoundError, match=r"missing\.shp"):
        city_bounds_m(_london_like(boundary_path="missing.shp"), tmp_path, 27700)


def test_boundary_file_in_another_crs_is_reprojected(tmp_path):
    box = gpd.GeoDataFrame(geometry=[Point(SCALA_LONLAT).buffer(0.01)], crs=4326)
    box.to_file(tmp_path / "b.gpkg")
    bounds = city_bounds_m(_london_like(boundary_path="b.gpkg"), tmp_path, 27700)
    assert bounds[0] < SCALA_BNG[0] < bounds[2] and bounds[1] < SCALA_BNG[1] < bounds[3]
    assert 1300 < bounds[2] - bounds[0] < 1500  # 0.02 degrees of longitude at 51.5 N
