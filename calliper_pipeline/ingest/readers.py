"""Reading POI source files: CSV / CSV.gz / GeoJSON / Parquet / GeoParquet / JSON lines (.gz)
into a DataFrame; OpenStreetMap files are read by :mod:`.osm`.

:func:`read_snapshot` returns the file's columns with a 1-based ``source_row`` and coordinate
columns. The rows it cannot read as a POI (a ragged CSV row, a non-point feature) stay in
place, marked (:mod:`.markers`), to be quarantined with the reason while the rest of the file
is ingested; the rows whose text had control characters stripped are marked too. Only a file
that is unusable as a whole raises :class:`SnapshotFormatError`: one line naming file and,
where known, line, row and field, saying how to fix the usual mistakes (another delimiter,
decimal commas, another encoding, projected coordinates in a GeoJSON). Validation and
projection happen later (:mod:`.validate`).
"""

from __future__ import annotations

import errno
import gzip
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from calliper_pipeline.cities.checks import OSM_FORMATS, osm_format_of
from calliper_pipeline.cities.spec import ColumnMap, SnapshotSpec, filter_columns
from calliper_pipeline.constants import COL_SOURCE_ROW
from calliper_pipeline.errors import ConfigError, SnapshotFormatError
from calliper_pipeline.ingest.csv_text import read_csv_text
from calliper_pipeline.ingest.geometry_files import read_geometry_file
from calliper_pipeline.ingest.markers import (
    COL_CLEANED,
    READ_MARKERS,
)

# Where read_snapshot puts point coordinates of a geometry file whose ColumnMap names none.
GEOMETRY_X = "x"
GEOMETRY_Y = "y"

SNAPSHOT_FORMATS = ("csv", "geojson", "parquet", "geoparquet", "jsonl", *OSM_FORMATS)
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
#: A number as coordinate text: decimal or scientific notation, or inf / infinity (signed).
_NUMBER = r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|(?i:inf|infinity))"
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
    elif osm_format_of(path.name, None):
        fmt = "osm"
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
    """Read a POI source file into a DataFrame of its columns plus ``source_row``.

    CSV (plain or gzip, told by content) is decoded with the source's ``encoding`` (default
    UTF-8, a byte-order mark dropped) and split on its ``delimiter`` (default ``,``); empty
    cells are missing (``"NA"`` stays a name). For GeoJSON / GeoParquet the point geometry,
    reprojected to ``spec.columns.source_epsg`` if the file's CRS differs, fills the
    coordinate columns (null or empty geometries give NaN) and the geometry column is dropped.
    ``source_row`` is the 1-based data row in the file (header and blank lines excluded); a
    source column of that name is replaced.

    Rows that cannot be read as a POI stay in the frame, marked for the quarantine:
    :data:`COL_READ_REASON` is ``ragged row`` (a CSV row whose field count differs from the
    header's; its columns are empty) or ``not a point`` (a non-point feature), with the field
    and the raw row in :data:`COL_READ_FIELD` / :data:`COL_READ_RAW` (None on good rows).
    Control characters (NUL included) are stripped from the id, name, category and group
    text; :data:`COL_CLEANED` marks the rows changed. Coordinate columns are float64 when
    every value parses (with the source's ``decimal`` mark), else the stripped text (the
    unparseable rows are quarantined by :mod:`.validate`).

    Raises:
        FileNotFoundError: no file at ``path``.
        SnapshotFormatError: the file as a whole is unusable, in one line naming file and,
            where known, line, row and field: unreadable or undecodable (the encoding to
            declare is suggested), no header, a required column (category, coordinates, and id
            / name / group / filter columns where named) missing, a one-column header holding
            another usual delimiter, coordinates written with decimal commas, a coordinate
            column of a non-numeric type, or projected coordinates in a file whose CRS says
            degrees.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "POI snapshot not found", str(path))
    fmt = snapshot_format(path, spec)
    if fmt == "csv":
        df = _read_csv(path, spec)
    elif fmt == "parquet":
        df = _read_parquet(path)
    elif fmt == "jsonl":
        df = read_json_lines(path)
    elif fmt in OSM_FORMATS:
        from calliper_pipeline.ingest.osm import read_osm  # imports this module

        df = read_osm(path, fmt, spec)
    else:
        cx, cy = coordinate_columns(spec.columns)
        df = read_geometry_file(path, fmt, spec.columns.source_epsg, cx, cy)
    _check_columns(df, path, spec)
    df = df.reset_index(drop=True)
    df[COL_SOURCE_ROW] = np.arange(1, len(df) + 1, dtype=np.int64)
    for col in READ_MARKERS:
        if col not in df.columns:
            df[col] = pd.Series(None, index=df.index, dtype=object)
    df[COL_CLEANED] = _strip_control_characters(df, spec.columns)
    for col in coordinate_columns(spec.columns):
        decimal = spec.decimal or "."
        df[col] = _coordinate_column(df[col], df[COL_SOURCE_ROW].to_numpy(), path, col, decimal)
    return df


def _read_csv(path: Path, spec: SnapshotSpec) -> pd.DataFrame:
    return read_csv_text(path, spec.encoding, spec.delimiter or ",")


# --------------------------------------------------------------------------- Parquet, geometry


def _open_text(path: Path) -> Any:
    """The file as text, gunzipped when it starts with the gzip magic bytes."""

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


def parse_coordinates(
    values: pd.Series, decimal: str = "."
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(float64 values, missing, unparseable) of a coordinate column.

    Numbers pass through (NaN is missing). Text is stripped; blank and ``nan``-like text
    (:data:`MISSING_TEXT`) is missing; with ``decimal=","`` a comma is the decimal mark; a
    number in decimal or scientific notation (or ``inf``) is read exactly as Python's
    ``float`` reads it; any other text is unparseable (NaN, not missing).
    """
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        floats = values.to_numpy(dtype=np.float64, na_value=np.nan)
        return floats, np.isnan(floats), np.zeros(len(floats), dtype=bool)
    text = values.astype("string").str.strip()
    missing = (text.isna() | text.str.lower().isin(MISSING_TEXT)).fillna(True)
    if decimal != ".":
        text = text.str.replace(decimal, ".", regex=False)
    number = text.str.fullmatch(_NUMBER).fillna(False).to_numpy(dtype=bool)
    number &= ~missing.to_numpy(dtype=bool)
    floats = np.full(len(values), np.nan)
    # float() per value: exactly Python's (correctly rounded) reading; pandas' fast parser
    # can be off by an ulp.
    floats[number] = text.to_numpy(dtype=object)[number].astype(np.float64)
    miss = missing.to_numpy(dtype=bool)
    return floats, miss, ~number & ~miss


def _coordinate_column(
    values: pd.Series, rows: np.ndarray, path: Path, col: str, decimal: str
) -> pd.Series:
    """float64 when every value parses; else the stripped text, for validation to quarantine.

    Raises:
        SnapshotFormatError: a column type that is not numbers or text, or coordinates that
            are mostly written with decimal commas while the source declares none.
    """
    if pd.api.types.is_bool_dtype(values) or not (
        pd.api.types.is_numeric_dtype(values)
        or pd.api.types.is_object_dtype(values)
        or pd.api.types.is_string_dtype(values)
    ):
        raise SnapshotFormatError(
            str(path), f"coordinate column has type {values.dtype}, not a number", field=col
        )
    floats, missing, bad = parse_coordinates(values, decimal)
    if not bad.any():
        return pd.Series(floats, index=values.index, dtype=np.float64)
    text = values.astype("string").str.strip()
    if decimal != ".":  # validation reads the text with the usual decimal point
        text = text.str.replace(decimal, ".", regex=False)
    else:
        comma = text.str.fullmatch(r"[+-]?\d+,\d+").fillna(False).to_numpy(dtype=bool)
        if comma.sum() * 2 > (~missing).sum():
            i = int(np.flatnonzero(comma)[0])
            raise SnapshotFormatError(
                str(path),
                f"coordinates use decimal commas ({int(comma.sum())} values such as "
                f'{text.iloc[i]!r}): add decimal = "," to its source entry in the city file',
                row=int(rows[i]),
                field=col,
            )
    out = text.astype(object)
    out[missing] = None
    return out


#: C0 and C1 control characters; tab, newline, CR, VT and FF become a space, the rest go.
_SPACE_CONTROLS = re.compile(r"[\t\n\r\x0b\x0c]+")
_OTHER_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")
_ANY_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def strip_control_characters(text: str) -> str:
    """``text`` without control characters (whitespace ones become one space)."""
    return _OTHER_CONTROLS.sub("", _SPACE_CONTROLS.sub(" ", text))


def _strip_control_characters(df: pd.DataFrame, cols: ColumnMap) -> np.ndarray:
    """Strip control characters from the id, name, category and group text in place.

    Returns which rows changed.
    """
    changed = np.zeros(len(df), dtype=bool)
    for col in dict.fromkeys(c for c in (cols.poi_id, cols.name, cols.category, cols.group) if c):
        values = df[col]
        if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
            continue
        try:
            hit_arr = values.str.contains(_ANY_CONTROL, na=False).to_numpy(dtype=bool)
        except AttributeError:  # an object column without text (e.g. Parquet integers)
            continue
        if hit_arr.any():
            df.loc[hit_arr, col] = values[hit_arr].map(strip_control_characters)
            changed |= hit_arr
    return changed
