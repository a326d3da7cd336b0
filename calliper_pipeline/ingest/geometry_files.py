"""Reading point geometry files (GeoJSON, GeoParquet) for :mod:`.readers`: properties as
columns, point coordinates reprojected to the source's EPSG; a file whose CRS says degrees
but whose points are not is refused; features that are not points stay in place, marked."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyproj import CRS

from calliper_pipeline.errors import SnapshotFormatError
from calliper_pipeline.ingest.markers import (
    COL_READ_FIELD,
    COL_READ_RAW,
    COL_READ_REASON,
    REASON_NOT_A_POINT,
)


def read_geometry_file(
    path: Path, fmt: str, source_epsg: int, x_column: str, y_column: str
) -> pd.DataFrame:
    """A GeoJSON or GeoParquet file's properties, with its point coordinates (in
    ``source_epsg``) in ``x_column``/``y_column``; features that are not points are kept in
    place, marked to be quarantined (:mod:`.markers`)."""
    import geopandas as gpd

    try:
        gdf = gpd.read_parquet(path) if fmt == "geoparquet" else gpd.read_file(_geojson(path))
    except Exception as exc:
        raise SnapshotFormatError(str(path), f"unreadable {fmt}: {exc}") from exc
    if not isinstance(gdf, gpd.GeoDataFrame) or gdf.geometry is None:
        raise SnapshotFormatError(str(path), "no geometry column", field="geometry")
    gdf = gdf.reset_index(drop=True)
    geom = gdf.geometry
    present = (geom.notna() & ~geom.is_empty).to_numpy()
    bad = present & (geom.geom_type != "Point").to_numpy()
    points = present & ~bad
    _check_degrees(path, gdf, geom, points)
    target = CRS.from_epsg(source_epsg)
    if gdf.crs is not None and not CRS(gdf.crs).equals(target, ignore_axis_order=True):
        geom = geom.to_crs(target)
    df = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
    df[x_column], df[y_column] = _point_xy(geom, points)
    if bad.any():  # kept in place (source_row stays the feature's number), marked
        marks = ((COL_READ_REASON, REASON_NOT_A_POINT), (COL_READ_FIELD, "geometry"))
        for col, value in marks:
            mark = np.full(len(df), None, dtype=object)
            mark[bad] = value
            df[col] = mark
        df[COL_READ_RAW] = None
        df.loc[bad, COL_READ_RAW] = [_feature_json(gdf, int(i)) for i in np.flatnonzero(bad)]
    return df


#: A JSON-escaped NUL (not itself an escaped backslash followed by "u0000").
_JSON_NUL = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def _geojson(path: Path) -> Any:
    """The GeoJSON to hand to GDAL: the file, or its text with each NUL made a U+0001.

    GDAL cuts a string at a NUL (``"Caf\\u0000e"`` would be read as ``"Caf"``); U+0001 keeps the
    rest of the string, and control-character stripping then removes and counts it.
    """
    import io

    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if b"\\u0000" not in data and b"\x00" not in data:
        return path
    return io.BytesIO(_JSON_NUL.sub(rb"\1\\u0001", data).replace(b"\x00", b"\x01"))


def _point_xy(geom: Any, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x and y of the point rows, NaN elsewhere."""
    import shapely

    x = np.full(len(points), np.nan)
    y = np.full(len(points), np.nan)
    arr = np.asarray(geom.to_numpy(), dtype=object)[points]
    x[points] = shapely.get_x(arr)
    y[points] = shapely.get_y(arr)
    return x, y


def _feature_json(gdf: pd.DataFrame, i: int) -> str:
    geometry = gdf.geometry  # type: ignore[attr-defined]
    props = {k: v for k, v in gdf.iloc[i].items() if k != geometry.name}
    props["geometry_type"] = geometry.iloc[i].geom_type
    return json.dumps(props, ensure_ascii=False, default=str)


def _check_degrees(path: Path, gdf: Any, geom: Any, points: np.ndarray) -> None:
    """Refuse a file whose CRS says degrees but most of whose points lie far outside them."""
    if gdf.crs is None or not CRS(gdf.crs).is_geographic or not points.any():
        return
    x, y = (v[points] for v in _point_xy(geom, points))
    off = ~((np.abs(x) <= 180) & (np.abs(y) <= 90))
    if off.sum() * 2 > len(x):
        raise SnapshotFormatError(
            str(path),
            f"{int(off.sum())} of {len(x)} points are not degrees (e.g. x={x[off][0]:.1f}, "
            f"y={y[off][0]:.1f}), but the file's CRS is {CRS(gdf.crs).to_string()} (GeoJSON's "
            "default when it declares none): the coordinates look projected; reproject the "
            "file to EPSG:4326 or declare its CRS",
            field="geometry",
        )
