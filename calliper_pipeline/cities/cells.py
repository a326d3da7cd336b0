"""Hexagon cells over a city: the places that maps colour and retrieval ranks.

A city either ships a hexagon grid (London: the authors' 350 m GLA grid, 15,041 cells) or gets
one generated over its boundary, or, for a city with only WGS84 bounds, over the bounds clipped
to its *land area*: the concave hull of its POIs (:func:`poi_outline_m`, shapely
``concave_hull`` with ``ratio`` :data:`POI_HULL_RATIO`; the convex hull where the concave one
degenerates), so that sea, and box corners without POIs, get no cells. Every cell table has the
same columns: ``cell_id`` (0-based row position, so it indexes embedding rows and
:func:`assign_cells` results alike), ``x_m``/``y_m`` (cell centroid in the metric CRS, metres),
``lon``/``lat`` (the centroid in WGS84 degrees) and the polygon ``geometry`` in the metric CRS.

The same module loads the map layers drawn on top (the city boundary, an overlay outline such
as London's Central Activities Zone) reprojected to the same CRS.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS

from calliper_pipeline.cities.geo import (
    city_boundary_m,
    read_layer,
    resolve_metric_epsg,
    transformer,
    wgs84_box_m,
)
from calliper_pipeline.cities.spec import CitySpec
from calliper_pipeline.constants import COL_LAT, COL_LON, COL_X, COL_Y, WGS84_EPSG
from calliper_pipeline.errors import ConfigError

logger = logging.getLogger(__name__)

COL_CELL_ID = "cell_id"
DEFAULT_CELL_SIZE_M = 350.0  # the paper's grid: 350 m between opposite edges of a hexagon
# shapely.concave_hull's ratio for a bounds-only city's land area: 0 is the tightest hull
# (follows every gap between POIs), 1 the convex hull; 0.3 keeps bays and empty corners out
# without cutting holes between a town's streets.
POI_HULL_RATIO = 0.3
BOUNDARY_LABEL = "City boundary"


@dataclass(frozen=True)
class MapLayers:
    """Outlines drawn on a city's maps, all in the cells' metric CRS (None: not drawn)."""

    boundary: gpd.GeoDataFrame | None = None
    overlay: gpd.GeoDataFrame | None = None
    overlay_label: str | None = None
    attribution: str = ""
    boundary_label: str = BOUNDARY_LABEL

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the map functions (:mod:`calliper_pipeline.maps.embedding_maps`)."""
        return {
            "boundary": self.boundary,
            "overlay": self.overlay,
            "overlay_label": self.overlay_label,
            "attribution": self.attribution,
            "boundary_label": self.boundary_label,
        }


def hexagon_grid(
    bounds_m: tuple[float, float, float, float],
    size_m: float = DEFAULT_CELL_SIZE_M,
    crs: Any = None,
) -> gpd.GeoDataFrame:
    """Flat-topped hexagons covering ``bounds_m`` (min_x, min_y, max_x, max_y; metres).

    ``size_m`` is the distance between opposite edges, which is also the distance between the
    centres of vertically adjacent cells (the GLA grid's convention: 350 m, 106,088 m² a cell).
    Columns are 1.5 circumradii apart and every other column is shifted up by half a cell.

    Returns:
        GeoDataFrame (C rows) with ``cell_id``, ``x_m``, ``y_m`` (cell centres) and ``geometry``.
    """
    min_x, min_y, max_x, max_y = (float(v) for v in bounds_m)
    if not (max_x > min_x and max_y > min_y):
        raise ValueError(f"empty bounds {bounds_m}")
    if size_m <= 0:
        raise ValueError(f"size_m must be positive, got {size_m}")
    radius = size_m / math.sqrt(3.0)
    n_cols = math.ceil((max_x - min_x) / (1.5 * radius)) + 1
    n_rows = math.ceil((max_y - min_y) / size_m) + 1
    cols, rows = np.meshgrid(np.arange(n_cols), np.arange(n_rows), indexing="ij")
    cx = min_x + 1.5 * radius * cols.ravel()
    cy = min_y + size_m * rows.ravel() + np.where(cols.ravel() % 2 == 1, size_m / 2.0, 0.0)
    angles = np.deg2rad(np.arange(6) * 60.0)
    ring = np.stack(
        [cx[:, None] + radius * np.cos(angles), cy[:, None] + radius * np.sin(angles)], axis=-1
    )
    return gpd.GeoDataFrame(
        {COL_CELL_ID: np.arange(len(cx)), COL_X: cx, COL_Y: cy},
        geometry=shapely.polygons(ring),
        crs=crs,
    )


def with_cell_columns(cells: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Add ``cell_id``, ``x_m``, ``y_m``, ``lon``, ``lat`` to polygons in a metric CRS.

    ``cell_id`` becomes the 0-based row position; centroids come from the geometry.
    """
    if cells.crs is None:
        raise ConfigError("cells have no CRS")
    out = cells.reset_index(drop=True).copy()
    centroids = out.geometry.centroid
    x = centroids.x.to_numpy(np.float64)
    y = centroids.y.to_numpy(np.float64)
    to_wgs84 = transformer(out.crs, CRS.from_epsg(WGS84_EPSG))
    lon, lat = to_wgs84.transform(x, y)
    out[COL_CELL_ID] = np.arange(len(out), dtype=np.int64)
    out[COL_X] = x
    out[COL_Y] = y
    out[COL_LON] = np.asarray(lon, np.float64)
    out[COL_LAT] = np.asarray(lat, np.float64)
    front = [COL_CELL_ID, COL_X, COL_Y, COL_LON, COL_LAT]
    rest = [c for c in out.columns if c not in front]
    return out[front + rest]


def poi_outline_m(
    lon: np.ndarray, lat: np.ndarray, metric_epsg: int, ratio: float = POI_HULL_RATIO
) -> shapely.Polygon:
    """The POIs' outline in ``metric_epsg`` (metres): their concave hull (shapely
    ``concave_hull(points, ratio)``; 1 gives the convex hull), or the convex hull when the
    concave one is not a polygon of positive area.

    Raises:
        ConfigError: fewer than three finite POIs, or all of them on one line.
    """
    x, y = transformer(CRS.from_epsg(WGS84_EPSG), CRS.from_epsg(metric_epsg)).transform(
        np.asarray(lon, np.float64), np.asarray(lat, np.float64)
    )
    xy = np.column_stack([x, y])
    xy = xy[np.isfinite(xy).all(axis=1)]
    points = shapely.multipoints(xy) if len(xy) else shapely.MultiPoint()
    for hull in (shapely.concave_hull(points, ratio=ratio), points.convex_hull):
        if isinstance(hull, shapely.Polygon) and hull.area > 0:
            return hull
    raise ConfigError(f"{len(xy)} POIs do not span an area: cannot outline the city's land")


def _centres_inside(cells: gpd.GeoDataFrame, area: Any) -> gpd.GeoDataFrame:
    """The cells whose centre lies inside ``area`` (whole hexagons, none cut)."""
    centres = shapely.points(cells[COL_X].to_numpy(), cells[COL_Y].to_numpy())
    shapely.prepare(area)
    return cells[shapely.contains(area, centres)]


def load_cells(
    city: CitySpec,
    data_root: Path,
    metric_epsg: int | None = None,
    size_m: float = DEFAULT_CELL_SIZE_M,
    land_m: shapely.Polygon | None = None,
) -> gpd.GeoDataFrame:
    """The city's cells in ``metric_epsg`` with ``cell_id, x_m, y_m, lon, lat, geometry``.

    The configured hexagon grid (``city.evaluation.hex_grid_path``) when there is one, its own
    columns kept (London: ``Hex_ID``). Otherwise :func:`hexagon_grid` of ``size_m`` over the
    boundary's extent, keeping the cells whose centre lies inside the boundary (the GLA grid's
    rule: whole hexagons, none cut), or over ``city.bounds_wgs84`` when there is no boundary,
    then (when ``land_m`` is given: :func:`poi_outline_m`, metres in ``metric_epsg``) keeping
    the cells whose centre lies inside ``land_m``.
    """
    epsg = resolve_metric_epsg(city, metric_epsg)
    grid_path = city.resolve(data_root, city.evaluation.hex_grid_path if city.evaluation else None)
    if grid_path is not None:
        cells = read_layer(grid_path, epsg)
        cells = cells[~(cells.geometry.is_empty | cells.geometry.isna())]
        return with_cell_columns(cells)
    if city.boundary_path is not None:
        area = city_boundary_m(city, data_root, epsg)
        min_x, min_y, max_x, max_y = area.bounds
        cells = hexagon_grid((min_x, min_y, max_x, max_y), size_m, CRS.from_epsg(epsg))
        cells = _centres_inside(cells, area)
    elif city.bounds_wgs84 is not None:
        min_x, min_y, max_x, max_y = wgs84_box_m(city.bounds_wgs84, epsg)
        cells = hexagon_grid((min_x, min_y, max_x, max_y), size_m, CRS.from_epsg(epsg))
        if land_m is not None:
            cells = _centres_inside(cells, land_m)
            if cells.empty:
                raise ConfigError(f"city {city.key!r}: no cell centre inside its POIs' outline")
    else:
        raise ConfigError(f"city {city.key!r}: no hex grid, boundary or bounds to place cells")
    logger.info("generated %d hexagon cells of %.0f m for %s", len(cells), size_m, city.key)
    return with_cell_columns(cells.drop(columns=[COL_CELL_ID, COL_X, COL_Y]))


def load_map_layers(
    city: CitySpec,
    data_root: Path,
    metric_epsg: int | None = None,
    land_m: shapely.Polygon | None = None,
) -> MapLayers:
    """The city's boundary and overlay outline (those configured) plus its attribution.

    A city without a boundary file gets ``land_m`` (its POIs' outline, :func:`poi_outline_m`)
    drawn as its boundary, labelled as such.
    """
    epsg = resolve_metric_epsg(city, metric_epsg)
    boundary_path = city.resolve(data_root, city.boundary_path)
    overlay_path = city.resolve(
        data_root, city.evaluation.overlay_path if city.evaluation else None
    )
    boundary, label = None, BOUNDARY_LABEL
    if boundary_path is not None:
        boundary = read_layer(boundary_path, epsg)
    elif land_m is not None:
        boundary = gpd.GeoDataFrame(geometry=[land_m], crs=CRS.from_epsg(epsg))
        label = "POI outline (concave hull)"
    return MapLayers(
        boundary=boundary,
        overlay=read_layer(overlay_path, epsg) if overlay_path is not None else None,
        overlay_label=city.evaluation.overlay_label if city.evaluation else None,
        attribution=city.attribution,
        boundary_label=label,
    )


def city_cells(
    city: CitySpec, data_root: Path, metric_epsg: int, pois: Any = None
) -> tuple[gpd.GeoDataFrame, MapLayers]:
    """Cells and map layers of a city as maps, retrieval and region embeddings use them.

    ``pois`` (a frame with WGS84 ``lon``/``lat``, e.g. the store's ``pois`` rows) outlines the
    land of a city that has neither a hex grid nor a boundary file; otherwise it is unused.
    """
    land = None
    has_grid = city.evaluation is not None and city.evaluation.hex_grid_path is not None
    if pois is not None and len(pois) and city.boundary_path is None and not has_grid:
        land = poi_outline_m(pois[COL_LON].to_numpy(), pois[COL_LAT].to_numpy(), metric_epsg)
    cells = load_cells(city, data_root, metric_epsg, land_m=land)
    return cells, load_map_layers(city, data_root, metric_epsg, land_m=land)
