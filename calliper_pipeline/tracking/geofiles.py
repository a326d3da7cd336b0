"""Geo files in and out of ``calliper embed``: GeoJSON/GeoPackage/Shapefile/GeoParquet inputs and
GeoParquet outputs (with JSON metadata of our own).

A geo input is read whole (geopandas), in any CRS it declares. Each row is embedded at one
WGS84 location: a point's own coordinates, or, for any other geometry (polygons, lines), its
centroid computed in the model's metric CRS (``ModelSpec.metric_epsg``, metres; a centroid
taken in degrees would be skewed). Three columns say where: ``embed_lon``/``embed_lat``
(WGS84 degrees) and ``embed_location`` (``"point"`` or ``"centroid EPSG:<metric>"``). Every
input column and the geometry are kept, in their order, before those three and ``e000``...;
the output is GeoParquet in the input's CRS.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from calliper_pipeline.constants import WGS84_EPSG
from calliper_pipeline.errors import ModelInputError

GEO_SUFFIXES = (".geojson", ".gpkg", ".shp", ".fgb")
EMBED_LON, EMBED_LAT, EMBED_LOCATION = "embed_lon", "embed_lat", "embed_location"
POINT = "point"
FILE_METADATA_KEY = b"calliper"


def is_geoparquet(path: Path) -> bool:
    """A Parquet file with GeoParquet ``geo`` metadata."""
    return b"geo" in (pq.read_schema(path).metadata or {})


def is_geo_input(path: Path) -> bool:
    """GeoJSON, GeoPackage, Shapefile, FlatGeobuf (by suffix) or GeoParquet (by metadata)."""
    suffix = Path(path).suffix.lower()
    if suffix in GEO_SUFFIXES:
        return True
    return suffix in (".parquet", ".pq") and is_geoparquet(path)


def read_geo(path: Path) -> gpd.GeoDataFrame:
    """A geo input file; ModelInputError naming the file if it has no CRS or empty geometry."""
    path = Path(path)
    suffix = path.suffix.lower()
    gdf = gpd.read_parquet(path) if suffix in (".parquet", ".pq") else gpd.read_file(path)
    if gdf.crs is None:
        raise ModelInputError(f"{path}: the geometry has no CRS (set one, e.g. EPSG:4326)")
    missing = np.flatnonzero((gdf.geometry.isna() | gdf.geometry.is_empty).to_numpy())
    if len(missing):
        rows = ", ".join(str(r) for r in missing[:5])
        raise ModelInputError(
            f"{path}: {len(missing)} rows have no geometry (0-based rows {rows}); field 'geometry'"
        )
    return gdf


def embed_locations(gdf: gpd.GeoDataFrame, metric_epsg: int) -> pd.DataFrame:
    """``embed_lon``, ``embed_lat`` (WGS84 degrees) and ``embed_location`` of each row."""
    geoms = gdf.geometry
    is_point = (geoms.geom_type == "Point").to_numpy()
    at = geoms.copy()
    if (~is_point).any():  # centroids in metres, then back to the input's CRS
        centroids = geoms[~is_point].to_crs(epsg=metric_epsg).centroid.to_crs(gdf.crs)
        at[~is_point] = centroids
    wgs84 = gpd.GeoSeries(at, crs=gdf.crs).to_crs(epsg=WGS84_EPSG)
    where = np.where(is_point, POINT, f"centroid EPSG:{metric_epsg}")
    return pd.DataFrame(
        {
            EMBED_LON: wgs84.x.to_numpy(np.float64),
            EMBED_LAT: wgs84.y.to_numpy(np.float64),
            EMBED_LOCATION: where,
        },
        index=gdf.index,
    )


def check_no_clash(path: Path, columns: Any, new: list[str]) -> None:
    clash = sorted(set(columns) & set(new))
    if clash:
        raise ModelInputError(f"{path}: columns clash with the output columns: {clash[:5]}")


def write_geoparquet(gdf: gpd.GeoDataFrame, path: Path, extra: dict[str, Any]) -> Path:
    """``gdf`` as GeoParquet at ``path`` (via ``<path>.tmp`` and a rename), with ``extra`` as
    JSON under the file metadata key ``calliper``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        gdf.to_parquet(tmp, index=False)
        table = pq.read_table(tmp)
        meta = dict(table.schema.metadata or {})
        meta[FILE_METADATA_KEY] = json.dumps(extra, sort_keys=True).encode()
        pq.write_table(table.replace_schema_metadata(meta), tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def file_metadata(path: Path) -> dict[str, Any]:
    """The ``calliper`` JSON of a file :func:`write_geoparquet` wrote ({} when absent)."""
    raw = (pq.read_schema(path).metadata or {}).get(FILE_METADATA_KEY)
    return json.loads(raw) if raw else {}
