"""Coordinate reference systems of a city: its metric CRS, projections, bounds and boundary.

Every CRS decision of the library lives here:

- :func:`utm_epsg`: the WGS84 UTM zone of a point;
- :func:`resolve_metric_epsg`: a city's metric EPSG (explicit > configured > UTM zone of its
  data's median point > UTM zone of its ``bounds_wgs84`` centre);
- :func:`transformer` / :func:`project`: cached, ``always_xy`` pyproj transforms (x/lon first);
- :func:`city_bounds_m`: the city's (min_x, min_y, max_x, max_y) in metres;
- :func:`read_layer` / :func:`city_boundary_m`: vector layers and the boundary polygon in metres.

Units: ``bounds_wgs84`` is (min_lon, min_lat, max_lon, max_lat) in degrees (EPSG:4326);
metric coordinates and bounds are metres of the metric EPSG. geopandas is imported only by the
functions that read vector files (it costs ~0.5 s), so this module is cheap to import.
"""

from __future__ import annotations

import errno
import functools
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pyproj import CRS, Transformer

from calliper_pipeline.constants import WGS84_EPSG
from calliper_pipeline.errors import ConfigError

if TYPE_CHECKING:
    import geopandas as gpd
    import shapely

    from calliper_pipeline.cities.spec import CitySpec

Bounds = tuple[float, float, float, float]


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS84 UTM zone containing (lon, lat) degrees (326xx north, 327xx south)."""
    if not (-180.0 <= lon <= 180.0 and -80.0 <= lat <= 84.0):
        raise ConfigError(f"no UTM zone for lon={lon}, lat={lat}")
    zone = min(math.floor((lon + 180.0) / 6.0) + 1, 60)
    return (32600 if lat >= 0 else 32700) + zone


@functools.lru_cache(maxsize=64)
def transformer(src: Any, dst: Any) -> Transformer:
    """A cached ``always_xy`` transformer between two CRSs (EPSG ints, "EPSG:n" or CRS)."""
    return Transformer.from_crs(src, dst, always_xy=True)


def project(
    first: np.ndarray, second: np.ndarray, src_epsg: int, dst_epsg: int
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised transform of (x/lon, y/lat) arrays between EPSG codes (x first, always)."""
    a = np.asarray(first, dtype=np.float64)
    b = np.asarray(second, dtype=np.float64)
    if src_epsg == dst_epsg:
        return a.copy(), b.copy()
    x, y = transformer(src_epsg, dst_epsg).transform(a, b)
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


def resolve_metric_epsg(
    city: CitySpec,
    metric_epsg: int | None = None,
    points_wgs84: tuple[np.ndarray, np.ndarray] | None = None,
) -> int:
    """The metric EPSG to use for ``city``; the one rule of the library.

    In order: ``metric_epsg`` when given; ``city.metric_epsg`` when configured; the UTM zone of
    the median of ``points_wgs84`` (lon, lat degree arrays; non-finite entries ignored) when
    any is finite; the UTM zone of the centre of ``city.bounds_wgs84``.

    Raises:
        ConfigError: none of these is available.
    """
    if metric_epsg is not None:
        return int(metric_epsg)
    if city.metric_epsg is not None:
        return int(city.metric_epsg)
    if points_wgs84 is not None:
        lon = np.asarray(points_wgs84[0], dtype=np.float64)
        lat = np.asarray(points_wgs84[1], dtype=np.float64)
        ok = np.isfinite(lon) & np.isfinite(lat)
        if ok.any():
            return utm_epsg(float(np.median(lon[ok])), float(np.median(lat[ok])))
    if city.bounds_wgs84 is not None:
        min_lon, min_lat, max_lon, max_lat = city.bounds_wgs84
        return utm_epsg((min_lon + max_lon) / 2.0, (min_lat + max_lat) / 2.0)
    raise ConfigError(f"city {city.key!r}: no metric CRS given and none can be derived")


def wgs84_box_m(bounds_wgs84: Bounds, metric_epsg: int) -> Bounds:
    """A WGS84 box projected to metres (densified edges, so it encloses the WGS84 box)."""
    box = transformer(WGS84_EPSG, metric_epsg).transform_bounds(*bounds_wgs84, densify_pts=21)
    return (float(box[0]), float(box[1]), float(box[2]), float(box[3]))


def city_bounds_m(city: CitySpec, data_root: Path, metric_epsg: int) -> Bounds:
    """The city's (min_x, min_y, max_x, max_y) in metres of ``metric_epsg``.

    From the boundary file's extent (its geometry reprojected when its CRS differs), else
    ``city.bounds_wgs84`` projected (:func:`wgs84_box_m`).

    Raises:
        FileNotFoundError: the configured boundary file is missing.
        ConfigError: neither a boundary file nor ``bounds_wgs84`` is configured, or the
            boundary has no CRS.
    """
    boundary = city.resolve(data_root, city.boundary_path)
    if boundary is not None:
        return _boundary_bounds(boundary, metric_epsg)
    if city.bounds_wgs84 is not None:
        return wgs84_box_m(city.bounds_wgs84, metric_epsg)
    raise ConfigError(f"{city.key}: set boundary_path or bounds_wgs84 to check POI bounds")


def _boundary_bounds(path: Path, metric_epsg: int) -> Bounds:
    import pyogrio

    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "city boundary not found", str(path))
    info = pyogrio.read_info(path)
    if not info.get("crs"):
        raise ConfigError(f"{path}: the boundary file has no CRS")
    if CRS(info["crs"]).equals(CRS.from_epsg(metric_epsg)):
        box = info["total_bounds"]
    else:
        box = read_layer(path, metric_epsg).total_bounds
    return (float(box[0]), float(box[1]), float(box[2]), float(box[3]))


def read_layer(path: Path, metric_epsg: int) -> gpd.GeoDataFrame:
    """A vector file reprojected to ``metric_epsg``; a file without a CRS is an error.

    Raises:
        ConfigError: the file is missing or has no CRS.
    """
    import geopandas as gpd

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"map layer not found: {path}")
    layer = gpd.read_file(path)
    if layer.crs is None:
        raise ConfigError(f"{path}: no CRS (missing .prj?); cannot place it on the map")
    return layer.to_crs(epsg=metric_epsg)


def city_boundary_m(city: CitySpec, data_root: Path, metric_epsg: int) -> shapely.Geometry:
    """The city's area in metres of ``metric_epsg`` as one (multi)polygon.

    The union of the boundary file's polygons when ``boundary_path`` is set; else the
    ``bounds_wgs84`` box with densified edges (21 points a side), projected.

    Raises:
        ConfigError: no boundary and no ``bounds_wgs84``, the file is missing or has no CRS.
    """
    import shapely

    path = city.resolve(data_root, city.boundary_path)
    if path is not None:
        return read_layer(path, metric_epsg).geometry.union_all()
    if city.bounds_wgs84 is None:
        raise ConfigError(f"{city.key}: set boundary_path or bounds_wgs84 to have a boundary")
    min_lon, min_lat, max_lon, max_lat = city.bounds_wgs84
    t = np.linspace(0.0, 1.0, 21)
    lon = np.concatenate([min_lon + t * (max_lon - min_lon), np.full(21, max_lon)])
    lat = np.concatenate([np.full(21, min_lat), min_lat + t * (max_lat - min_lat)])
    lon = np.concatenate([lon, max_lon - t * (max_lon - min_lon), np.full(21, min_lon)])
    lat = np.concatenate([lat, np.full(21, max_lat), max_lat - t * (max_lat - min_lat)])
    x, y = project(lon, lat, WGS84_EPSG, metric_epsg)
    return shapely.Polygon(np.column_stack([x, y]))
