"""One metric-CRS rule for the library (calliper_pipeline.cities.geo)."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from shapely.geometry import Point

from calliper_pipeline.cities import geo
from calliper_pipeline.cities.spec import CitySpec, ColumnMap, SnapshotSpec
from calliper_pipeline.errors import ConfigError

SNAP = SnapshotSpec(path="p.csv", columns=ColumnMap(category="c", lon="lon", lat="lat"))

# (lon, lat) of a city centre and its WGS84 UTM zone
CITIES = {
    "london": ((-0.1276, 51.5072), 32630),
    "new_york": ((-74.006, 40.7128), 32618),
    "sydney": ((151.2093, -33.8688), 32756),
    "tokyo": ((139.6917, 35.6895), 32654),
    "nairobi": ((36.8219, -1.2921), 32737),
}


def _city(key: str, **kw) -> CitySpec:
    return CitySpec(key=key, name=key, snapshot=SNAP, **kw)


@pytest.mark.parametrize("key", sorted(CITIES))
def test_resolve_metric_epsg_picks_the_utm_zone(key: str) -> None:
    (lon, lat), epsg = CITIES[key]
    assert geo.utm_epsg(lon, lat) == epsg
    box = (lon - 0.2, lat - 0.1, lon + 0.2, lat + 0.1)
    assert geo.resolve_metric_epsg(_city(key, bounds_wgs84=box)) == epsg
    points = (np.array([lon, lon + 0.01, np.nan]), np.array([lat, lat, 0.0]))
    assert geo.resolve_metric_epsg(_city(key), points_wgs84=points) == epsg


def test_resolve_metric_epsg_precedence() -> None:
    city = _city("c", metric_epsg=27700, bounds_wgs84=(10.0, 50.0, 10.2, 50.1))
    assert geo.resolve_metric_epsg(city, 3857) == 3857  # explicit first
    assert geo.resolve_metric_epsg(city) == 27700  # then the configured one
    free = _city("c", bounds_wgs84=(10.0, 50.0, 10.2, 50.1))
    lonlat = (np.array([-0.1]), np.array([51.5]))
    assert geo.resolve_metric_epsg(free, points_wgs84=lonlat) == 32630  # data over bounds
    empty = (np.array([np.nan]), np.array([np.nan]))
    assert geo.resolve_metric_epsg(free, points_wgs84=empty) == 32632  # bounds' centre
    with pytest.raises(ConfigError):
        geo.resolve_metric_epsg(_city("c"))


def test_utm_epsg_refuses_the_poles() -> None:
    with pytest.raises(ConfigError):
        geo.utm_epsg(0.0, 85.0)


def test_city_boundary_from_bounds_encloses_the_projected_box() -> None:
    box = (-0.6, 51.2, 0.4, 51.8)
    area = geo.city_boundary_m(_city("c", bounds_wgs84=box), Path("/nonexistent"), 27700)
    x, y = geo.project(np.array([-0.1276]), np.array([51.5072]), 4326, 27700)
    assert area.contains(shapely.Point(x[0], y[0]))
    bounds = geo.city_bounds_m(_city("c", bounds_wgs84=box), Path("/nonexistent"), 27700)
    assert np.allclose(area.bounds, bounds, atol=1.0)


def test_city_boundary_from_a_file_is_reprojected(tmp_path: Path) -> None:
    disc = gpd.GeoDataFrame(geometry=[Point(-0.1276, 51.5072).buffer(0.01)], crs=4326)
    disc.to_file(tmp_path / "b.gpkg")
    city = _city("c", boundary_path="b.gpkg")
    area = geo.city_boundary_m(city, tmp_path, 27700)
    assert 1300 < area.bounds[2] - area.bounds[0] < 1500  # 0.02 degrees of longitude
    assert geo.city_bounds_m(city, tmp_path, 27700) == pytest.approx(area.bounds, abs=1.0)
    with pytest.raises(ConfigError):
        geo.city_boundary_m(_city("c"), tmp_path, 27700)
