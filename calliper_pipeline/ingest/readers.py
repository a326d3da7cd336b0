"""Reading POI source files: CSV / CSV.gz / GeoJSON / Parquet / GeoParquet / JSON lines (.gz)
into a DataFrame.

:func:`read_snapshot` returns the file's columns, a 1-based ``source_row`` and float64
coordinate columns; a file that cannot be parsed raises :class:`SnapshotFormatError` naming
file, row and field. Validation and projection happen later (:mod:`.validate`).
"""

from __future__ import annotations

import errno
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyproj import CRS

from calliper_pipeline.cities.spec import ColumnMap, SnapshotSpec, filter_columns
from calliper_pipeline.constants import COL_SOURCE_ROW
from calliper_pipeline.errors import ConfigError, SnapshotFormatError

# Where read_snapshot puts point coordinates of a geometry file whose ColumnMap names none.
GEOMETRY_X = "x"
GEOMETRY_Y = "y"

SNAPSHOT_FORMATS = ("csv", "geojson", "parquet", "geoparquet", "jsonl")
_FORMAT_ALIASES = {
    "csv.gz": "csv",
    "json": "geojson",
    "pq": "parquet",
    "ndjson": "jsonl",
    "jsonl.gz": "jsonl",
}
_SUFFIX_FORMATS = {
    ".csv": "csv",
    ".geojson": "geojson",
    ".json": "geojson",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".geoparquet": "geoparquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
#: Text that counts as a missing value in text columns.
MISSING_TEXT = frozenset({"", "nan", "na", "n/a", "null", "none"})


def snapshot_format(path: Path, spec: SnapshotSpec) -> str:
    """The snapshot's format: ``spec.format`` if set, else from the file suffix.

    Parquet files carrying GeoParquet ``geo`` metadata are read as GeoParquet.
    """
    if spec.format:
        fmt = _FORMAT_ALIASES.get(spec.format.lower(), spec.format.lower())
        if fmt not in SNAPSHOT_FORMATS:
            raise ConfigError(f"unknown snapshot format {spec.format!r}; use {SNAPSHOT_FORMATS}")
    else:
        suffixes = [s.lower() for s in path.suffixes]
        if suffixes and suffixes[-1] == ".gz":
            suffixes = suffixes[:-1]
        fmt = _SUFFIX_FORMATS.get(suffixes[-1] if suffixes else "", "")
        if not fmt:
            raise SnapshotFormatError(str(path), "cannot tell the format from the file name")
    if fmt == "parquet" and _has_geo_metadata(path):
        fmt = "geoparquet"
    return fmt


def _has_geo_metadata(path: Path) -> bool:
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
    except Exception as exc:
        raise SnapshotFormatError(str(path), f"not a readable Parquet file: {exc}") from exc
    return b"geo" in meta


def coordinate_columns(columns: ColumnMap) -> tuple[str, str]:
    """The ColumnMap's coordinate columns, or (x, y) for a geometry file that names none."""
    try:
        return columns.coordinate_columns()
    except ConfigError:
        return GEOMETRY_X, GEOMETRY_Y


def read_snapshot(path: Path, spec: SnapshotSpec) -> pd.DataFrame:
    """Read a POI snapshot into a DataFrame of its columns plus ``source_row``.

    CSV is read as text (empty cells are missing; ``"NA"`` stays a name); coordinate columns
    are parsed to float64. For GeoJSON / GeoParquet the point geometry, reprojected to
    ``spec.columns.source_epsg`` if the file's CRS differs, fills the coordinate columns (null
    or empty geometries give NaN) and the geometry column is dropped. ``source_row`` is the
    1-based row number in the file (header excluded); a source column of that name is replaced.

    Raises:
        FileNotFoundError: no file at ``path``.
        SnapshotFormatError: unparseable file, a required column (category, coordinates, and
            id / name / group / filter columns where named) missing, a non-point geometry, or a
            coordinate value that is not a number; names the file and, where known, the row
            and field.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "POI snapshot not found", str(path))
    fmt = snapshot_format(path, spec)
    if fmt == "csv":
        df = _read_csv(path)
    elif fmt == "parquet":
        df = _read_parquet(path)
    elif fmt == "jsonl":
        df = read_json_lines(path)
    else:
        df = _read_geometry_file(path, fmt, spec.columns)
    _check_columns(df, path, spec)
    df = df.reset_index(drop=True)
    df[COL_SOURCE_ROW] = np.arange(1, len(df) + 1, dtype=np.int64)
    for col in coordinate_columns(spec.columns):
        df[col] = _parse_coordinates(df[col], path, col)
    return df


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.ParserError as exc:
        match = re.search(r"line (\d+)", str(exc))
        row = int(match.group(1)) - 1 if match else None  # file line 1 is the header
        raise SnapshotFormatError(str(path), f"unparseable CSV: {exc}", row=row) from exc
    except pd.errors.EmptyDataError as exc:
        raise SnapshotFormatError(str(path), "empty file (no header row)") from exc
    except (UnicodeDecodeError, OSError, EOFError, ValueError) as exc:
        raise SnapshotFormatError(str(path), f"unreadable CSV: {exc}") from exc


def _open_text(path: Path) -> Any:
    """The file as text, gunzipped when it starts with the gzip magic bytes."""
    import gzip

    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def read_json_lines(path: Path) -> pd.DataFrame:
    """A JSON-lines file (one JSON object per line; ``.jsonl``/``.ndjson``, gzip allowed).

    Blank lines are skipped; a key missing from an object is a missing value. Values keep
    their JSON types (text, numbers, booleans, null); nested objects and arrays stay as they
    are (only named columns are used).

    Raises:
        SnapshotFormatError: a line is not valid JSON or not an object (naming its line
            number), the file is not UTF-8 text or holds no object.
    """
    import json

    records: list[dict[str, Any]] = []
    try:
        with _open_text(path) as fh:
            for line_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    msg = f"line {line_no} is not valid JSON: {exc.msg} (column {exc.colno})"
                    raise SnapshotFormatError(str(path), msg, row=len(records) + 1) from exc
                if not isinstance(obj, dict):
                    msg = f"line {line_no} is a JSON {type(obj).__name__}, not an object"
                    raise SnapshotFormatError(str(path), msg, row=len(records) + 1)
                records.append(obj)
    except (UnicodeDecodeError, OSError, EOFError) as exc:
        raise SnapshotFormatError(str(path), f"unreadable JSON lines: {exc}") from exc
    if not records:
        raise SnapshotFormatError(str(path), "empty file (no JSON object)")
    # object columns keep each value as JSON gave it: id 7 stays "7" (not "7.0") when another
    # row has a null id; coordinates are parsed later
    names = list(dict.fromkeys(k for r in records for k in r))
    return pd.DataFrame({c: pd.Series([r.get(c) for r in records], dtype=object) for c in names})


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:
        raise SnapshotFormatError(str(path), f"unreadable Parquet: {exc}") from exc


def _read_geometry_file(path: Path, fmt: str, columns: ColumnMap) -> pd.DataFrame:
    import geopandas as gpd

    try:
        gdf = gpd.read_parquet(path) if fmt == "geoparquet" else gpd.read_file(path)
    except Exception as exc:
        raise SnapshotFormatError(str(path), f"unreadable {fmt}: {exc}") from exc
    if not isinstance(gdf, gpd.GeoDataFrame) or gdf.geometry is None:
        raise SnapshotFormatError(str(path), "no geometry column", field="geometry")
    geom = gdf.geometry
    present = geom.notna() & ~geom.is_empty
    bad = present & (geom.geom_type != "Point")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise SnapshotFormatError(
            str(path),
            f"geometry must be a Point, got {geom.iloc[i].geom_type}",
            row=i + 1,
            field="geometry",
        )
    target = CRS.from_epsg(columns.source_epsg)
    if gdf.crs is not None and not CRS(gdf.crs).equals(target, ignore_axis_order=True):
        geom = geom.to_crs(target)
    cx, cy = coordinate_columns(columns)
    df = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
    df[cx] = geom.x.where(present).to_numpy(dtype=float)
    df[cy] = geom.y.where(present).to_numpy(dtype=float)
    return df


def _check_columns(df: pd.DataFrame, path: Path, spec: SnapshotSpec) -> None:
    cols = spec.columns
    named = [cols.category, *coordinate_columns(cols), cols.poi_id, cols.name, cols.group]
    required = [c for c in named if c] + filter_columns(spec.filters)
    missing = [c for c in dict.fromkeys(required) if c not in df.columns]
    if missing:
        raise SnapshotFormatError(
            str(path),
            f"missing required column(s) {missing}; the file has {list(df.columns)}",
            field=missing[0],
        )


def _parse_coordinates(values: pd.Series, path: Path, col: str) -> pd.Series:
    """Coordinate column as float64; blank / 'nan'-like text becomes NaN (quarantined later)."""
    if pd.api.types.is_bool_dtype(values) or not (
        pd.api.types.is_numeric_dtype(values)
        or pd.api.types.is_object_dtype(values)
        or pd.api.types.is_string_dtype(values)
    ):
        raise SnapshotFormatError(
            str(path), f"coordinate column has type {values.dtype}, not a number", field=col
        )
    if pd.api.types.is_numeric_dtype(values):
        return values.astype(np.float64)
    text = values.astype("string").str.strip()
    blank = text.isna() | text.str.lower().isin(MISSING_TEXT).fillna(False)
    parsed = pd.to_numeric(text.mask(blank), errors="coerce")
    bad = (parsed.isna() & ~blank).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SnapshotFormatError(
            str(path), f"cannot parse {values.iloc[i]!r} as a number", row=i + 1, field=col
        )
    return parsed.astype(np.float64)
