"""POI snapshots: read, filter, validate, project, describe, and ingest into the store.

The flow of one city (:func:`ingest_city`):

1. fingerprint the snapshot file (its SHA-256 is the data version);
2. :func:`read_snapshot`: CSV / CSV.gz / GeoJSON / Parquet / GeoParquet into a DataFrame with the
   source columns, a 1-based ``source_row`` and float coordinate columns; a file that cannot be
   parsed raises :class:`SnapshotFormatError` naming file, row and field;
3. :func:`normalise_pois`: apply the city's equality filters (counted), validate every remaining
   row (failures go to the quarantine with a reason), project to the metric CRS and to WGS84,
   build descriptions and their text hashes;
4. :func:`store.write_city_pois`: replace the city's rows in one transaction.

Every input row ends up exactly once as valid, filtered out, or quarantined:
``rows_read == rows_valid + rows_filtered_out + rows_quarantined`` (checked by IngestReport).
"""

from __future__ import annotations

import errno
import functools
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from pyproj import CRS, Transformer

from calliper_pipeline.cities.spec import CitySpec, ColumnMap, SnapshotSpec, utm_epsg
from calliper_pipeline.config import DescriptionConfig
from calliper_pipeline.constants import (
    COL_CATEGORY,
    COL_CITY,
    COL_DESCRIPTION,
    COL_GROUP,
    COL_LAT,
    COL_LON,
    COL_NAME,
    COL_POI_ID,
    COL_SNAPSHOT_HASH,
    COL_SOURCE_ROW,
    COL_TEXT_HASH,
    COL_X,
    COL_Y,
    POI_COLUMNS,
    WGS84_EPSG,
)
from calliper_pipeline.errors import ConfigError, EmptySnapshotError, SnapshotFormatError
from calliper_pipeline.hashing import file_hash, text_hash
from calliper_pipeline.ingest.descriptions import describe_frame
from calliper_pipeline.store import pois as store

# Quarantine reasons, in the order rows are checked (a row gets the first that applies).
REASON_MISSING_ID = "missing id"
REASON_UNPARSEABLE_COORDINATES = "unparseable coordinates"
REASON_MISSING_COORDINATES = "missing coordinates"
REASON_NONFINITE_COORDINATES = "non-finite coordinates"
REASON_MISSING_CATEGORY = "missing category"
REASON_OUTSIDE_BOUNDS = "outside city bounds"
REASON_DUPLICATE_ID = "duplicate id"

# Where read_snapshot puts point coordinates of a geometry file whose ColumnMap names none.
GEOMETRY_X = "x"
GEOMETRY_Y = "y"

SNAPSHOT_FORMATS = ("csv", "geojson", "parquet", "geoparquet")
_FORMAT_ALIASES = {"csv.gz": "csv", "json": "geojson", "pq": "parquet"}
_SUFFIX_FORMATS = {
    ".csv": "csv",
    ".geojson": "geojson",
    ".json": "geojson",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".geoparquet": "geoparquet",
}
_MISSING_TEXT = frozenset({"", "nan", "na", "n/a", "null", "none"})
_TRUE_TEXT = frozenset({"true", "t", "1", "1.0", "yes", "y"})
_FALSE_TEXT = frozenset({"false", "f", "0", "0.0", "no", "n"})


@dataclass(frozen=True)
class IngestReport:
    """What happened to a snapshot's rows (all counts are rows of the snapshot file).

    ``filtered_by`` maps each filter column to the rows it removed (filters apply in order);
    ``quarantined_by`` maps each quarantine reason to its rows. ``bounds_m`` is the city's
    (min_x, min_y, max_x, max_y) in metres of ``metric_epsg``. ``seconds`` is wall time.
    """

    city: str
    snapshot_hash: str
    metric_epsg: int
    rows_read: int
    rows_filtered_out: int
    rows_valid: int
    rows_quarantined: int
    filtered_by: dict[str, int] = field(default_factory=dict)
    quarantined_by: dict[str, int] = field(default_factory=dict)
    bounds_m: tuple[float, float, float, float] | None = None
    source_path: str = ""
    seconds: float = 0.0

    def __post_init__(self) -> None:
        accounted = self.rows_valid + self.rows_filtered_out + self.rows_quarantined
        if accounted != self.rows_read:
            raise ValueError(f"{self.rows_read} rows read but {accounted} accounted for")
        if sum(self.filtered_by.values()) != self.rows_filtered_out:
            raise ValueError("filtered_by does not sum to rows_filtered_out")
        if sum(self.quarantined_by.values()) != self.rows_quarantined:
            raise ValueError("quarantined_by does not sum to rows_quarantined")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-serialisable) for logs and asset metadata."""
        return asdict(self)


@dataclass(frozen=True, eq=False)
class NormalisedPois:
    """Result of :func:`normalise_pois`.

    ``pois``: exactly :data:`constants.POI_COLUMNS`, one row per valid POI in source order.
    ``quarantine``: :data:`store.QUARANTINE_COLUMNS` (city, source_row, poi_id, field, reason,
    raw_json), one row per rejected row. ``report``: the counts.
    """

    pois: pd.DataFrame
    quarantine: pd.DataFrame
    report: IngestReport


# --------------------------------------------------------------------------- reading


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
    required = [c for c in named if c] + list(spec.filters)
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
    blank = text.isna() | text.str.lower().isin(_MISSING_TEXT).fillna(False)
    parsed = pd.to_numeric(text.mask(blank), errors="coerce")
    bad = (parsed.isna() & ~blank).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SnapshotFormatError(
            str(path), f"cannot parse {values.iloc[i]!r} as a number", row=i + 1, field=col
        )
    return parsed.astype(np.float64)


# --------------------------------------------------------------------------- CRS and bounds


@functools.lru_cache(maxsize=32)
def _transformer(src_epsg: int, dst_epsg: int) -> Transformer:
    return Transformer.from_crs(src_epsg, dst_epsg, always_xy=True)


def project(
    first: np.ndarray, second: np.ndarray, src_epsg: int, dst_epsg: int
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised transform of (x/lon, y/lat) arrays between EPSG codes (x first, always)."""
    a = np.asarray(first, dtype=np.float64)
    b = np.asarray(second, dtype=np.float64)
    if src_epsg == dst_epsg:
        return a.copy(), b.copy()
    x, y = _transformer(src_epsg, dst_epsg).transform(a, b)
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


def resolve_metric_epsg(city: CitySpec, raw_df: pd.DataFrame) -> int:
    """The city's metric EPSG: ``city.metric_epsg``, else the UTM zone of the data's median point.

    The median lon/lat is taken over the rows with finite coordinates (in the snapshot's
    ``source_epsg``, converted to WGS84); with none, the centre of ``city.bounds_wgs84``.

    Raises:
        EmptySnapshotError: no metric EPSG configured and nothing to locate the city by.
    """
    if city.metric_epsg is not None:
        return int(city.metric_epsg)
    cols = city.snapshot.columns
    cx, cy = coordinate_columns(cols)
    a = pd.to_numeric(raw_df[cx], errors="coerce").to_numpy(dtype=float)
    b = pd.to_numeric(raw_df[cy], errors="coerce").to_numpy(dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.any():
        lon, lat = project(
            np.array([np.median(a[ok])]), np.array([np.median(b[ok])]), cols.source_epsg, 4326
        )
        return utm_epsg(float(lon[0]), float(lat[0]))
    if city.bounds_wgs84 is not None:
        min_lon, min_lat, max_lon, max_lat = city.bounds_wgs84
        return utm_epsg((min_lon + max_lon) / 2, (min_lat + max_lat) / 2)
    raise EmptySnapshotError(f"{city.key}: no finite coordinates to choose a UTM zone from")


def city_bounds_m(
    city: CitySpec, data_root: Path, metric_epsg: int
) -> tuple[float, float, float, float]:
    """The city's (min_x, min_y, max_x, max_y) in metres of ``metric_epsg``.

    From the boundary file's extent (its geometry reprojected when its CRS differs), else
    ``city.bounds_wgs84`` projected (densified edges, so the box encloses the WGS84 box).

    Raises:
        FileNotFoundError: the configured boundary file is missing.
        ConfigError: neither a boundary file nor ``bounds_wgs84`` is configured, or the
            boundary has no CRS.
    """
    boundary = city.resolve(data_root, city.boundary_path)
    if boundary is not None:
        return _boundary_bounds(boundary, metric_epsg)
    if city.bounds_wgs84 is not None:
        box = _transformer(WGS84_EPSG, metric_epsg).transform_bounds(
            *city.bounds_wgs84, densify_pts=21
        )
        return (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
    raise ConfigError(f"{city.key}: set boundary_path or bounds_wgs84 to check POI bounds")


def _boundary_bounds(path: Path, metric_epsg: int) -> tuple[float, float, float, float]:
    import pyogrio

    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "city boundary not found", str(path))
    info = pyogrio.read_info(path)
    if not info.get("crs"):
        raise ConfigError(f"{path}: the boundary file has no CRS")
    if CRS(info["crs"]).equals(CRS.from_epsg(metric_epsg)):
        box = info["total_bounds"]
    else:
        import geopandas as gpd  # only here: importing it costs ~0.5 s

        box = gpd.read_file(path).to_crs(epsg=metric_epsg).total_bounds
    return (float(box[0]), float(box[1]), float(box[2]), float(box[3]))


# --------------------------------------------------------------------------- normalising


def _filter_mask(values: pd.Series, wanted: Any) -> np.ndarray:
    """Rows equal to ``wanted``; text 'True'/'false'/'1'… compare equal to booleans."""
    if isinstance(wanted, bool):
        if pd.api.types.is_bool_dtype(values):
            return (values == wanted).to_numpy(dtype=bool)
        text = values.astype("string").str.strip().str.lower()
        return text.isin(_TRUE_TEXT if wanted else _FALSE_TEXT).fillna(False).to_numpy(bool)
    if isinstance(wanted, int | float):
        return (pd.to_numeric(values, errors="coerce") == wanted).to_numpy(dtype=bool)
    text = values.astype("string").str.strip()
    return (text == str(wanted)).fillna(False).to_numpy(dtype=bool)


def apply_filters(
    raw: pd.DataFrame, filters: Mapping[str, Any]
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Keep rows whose column equals the value, filter by filter; count the rows each removed."""
    kept = raw
    counts: dict[str, int] = {}
    for col, wanted in filters.items():
        mask = _filter_mask(kept[col], wanted)
        counts[col] = int((~mask).sum())
        kept = kept.loc[mask]
    return kept, counts


def _clean_strings(values: pd.Series) -> pd.Series:
    """Stripped text as object dtype, None where missing or blank."""
    text = values.astype("string").str.strip()
    text = text.mask(text == "")
    out = text.astype(object)
    out[text.isna().to_numpy()] = None
    return out


def _none_series(index: pd.Index) -> pd.Series:
    return pd.Series(None, index=index, dtype=object)


def _raw_json(raw_rows: pd.DataFrame) -> list[str]:
    if raw_rows.empty:
        return []
    body = raw_rows.drop(columns=[COL_SOURCE_ROW]).to_json(
        orient="records", lines=True, force_ascii=False, default_handler=str
    )
    # JSON escapes newlines inside strings, so "\n" separates records only.
    return [line for line in body.split("\n") if line]


def _coerce_coordinates(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values, missing mask); unparseable text is NaN but not missing."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        floats = values.to_numpy(dtype=np.float64, na_value=np.nan)
        return floats, np.isnan(floats)
    text = values.astype("string").str.strip()
    missing = (text.isna() | text.str.lower().isin(_MISSING_TEXT)).fillna(True)
    floats = pd.to_numeric(text.mask(missing), errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    return floats, missing.to_numpy(dtype=bool)


def _validate(
    ids: pd.Series,
    category: pd.Series,
    coords: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    xy_m: tuple[np.ndarray, np.ndarray],
    cols: ColumnMap,
    bounds: tuple[float, float, float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """(reason, field) per row; None where the row is valid. The first failing check wins.

    ``coords`` is (first, second, first_missing, second_missing) in the source CRS.
    """
    cx, cy = coordinate_columns(cols)
    id_field = cols.poi_id or COL_SOURCE_ROW
    a, b, a_missing, b_missing = coords
    x, y = xy_m
    inside = (x >= bounds[0]) & (x <= bounds[2]) & (y >= bounds[1]) & (y <= bounds[3])
    checks: list[tuple[str, np.ndarray, Any]] = [
        (REASON_MISSING_ID, ids.isna().to_numpy(), id_field),
        (REASON_UNPARSEABLE_COORDINATES, np.isnan(a) & ~a_missing, cx),
        (REASON_UNPARSEABLE_COORDINATES, np.isnan(b) & ~b_missing, cy),
        (REASON_MISSING_COORDINATES, a_missing | b_missing, np.where(a_missing, cx, cy)),
        (REASON_NONFINITE_COORDINATES, ~np.isfinite(a) | ~np.isfinite(b), f"{cx},{cy}"),
        (REASON_MISSING_CATEGORY, category.isna().to_numpy(), cols.category),
        (REASON_OUTSIDE_BOUNDS, ~inside, f"{cx},{cy}"),
    ]
    reason = np.full(len(ids), None, dtype=object)
    where = np.full(len(ids), None, dtype=object)
    for name, failed, col in checks:
        hit = failed & (reason == None)  # noqa: E711 (elementwise on an object array)
        reason[hit] = name
        where[hit] = col[hit] if isinstance(col, np.ndarray) else col
    valid = reason == None  # noqa: E711
    dup = np.zeros(len(ids), dtype=bool)
    dup[valid] = ids[valid].duplicated(keep="first").to_numpy()
    reason[dup] = REASON_DUPLICATE_ID
    where[dup] = id_field
    return reason, where


def normalise_pois(
    raw: pd.DataFrame,
    city: CitySpec,
    data_root: Path,
    desc_cfg: DescriptionConfig,
    snapshot_hash: str,
) -> NormalisedPois:
    """Filter, validate, project and describe a raw snapshot (see the module docstring).

    Args:
        raw: :func:`read_snapshot`'s frame (a frame without ``source_row`` gets 1..n).
        city: the city; its ColumnMap names the source columns.
        data_root: folder the city's relative paths (boundary) resolve against.
        desc_cfg: description variant and lower-casing.
        snapshot_hash: the snapshot file's hash, stored on every POI row.

    Duplicate ids are detected among rows that pass every other check, so the first *valid*
    row of an id is kept and the later ones are quarantined as ``duplicate id``.
    """
    cols = city.snapshot.columns
    if COL_SOURCE_ROW not in raw.columns:
        raw = raw.assign(**{COL_SOURCE_ROW: np.arange(1, len(raw) + 1, dtype=np.int64)})
    kept, filtered_by = apply_filters(raw, city.snapshot.filters)
    metric_epsg = resolve_metric_epsg(city, kept)
    bounds = city_bounds_m(city, data_root, metric_epsg)
    cx, cy = coordinate_columns(cols)
    a, a_missing = _coerce_coordinates(kept[cx])
    b, b_missing = _coerce_coordinates(kept[cy])
    with np.errstate(invalid="ignore"):
        x_m, y_m = project(a, b, cols.source_epsg, metric_epsg)
        lon, lat = project(a, b, cols.source_epsg, WGS84_EPSG)
    source_row = kept[COL_SOURCE_ROW].to_numpy(dtype=np.int64)
    if cols.poi_id:
        ids = _clean_strings(kept[cols.poi_id])
    else:
        ids = pd.Series(source_row.astype(str), index=kept.index, dtype=object)
    category = _clean_strings(kept[cols.category])
    coords = (a, b, a_missing, b_missing)
    reason, where = _validate(ids, category, coords, (x_m, y_m), cols, bounds)
    ok = reason == None  # noqa: E711
    name = _clean_strings(kept[cols.name]) if cols.name else _none_series(kept.index)
    group = _clean_strings(kept[cols.group]) if cols.group else _none_series(kept.index)

    pois = pd.DataFrame(
        {
            COL_CITY: city.key,
            COL_POI_ID: ids[ok].to_numpy(),
            COL_NAME: name[ok].to_numpy(),
            COL_CATEGORY: category[ok].to_numpy(),
            COL_GROUP: group[ok].to_numpy(),
            COL_LON: lon[ok],
            COL_LAT: lat[ok],
            COL_X: x_m[ok],
            COL_Y: y_m[ok],
            COL_SOURCE_ROW: source_row[ok],
            COL_SNAPSHOT_HASH: snapshot_hash,
        },
        index=pd.RangeIndex(int(ok.sum())),
    )
    pois[COL_DESCRIPTION] = describe_frame(pois, city, desc_cfg).to_numpy(dtype=object)
    hashes = {t: text_hash(t) for t in pois[COL_DESCRIPTION].unique()}
    pois[COL_TEXT_HASH] = pois[COL_DESCRIPTION].map(hashes)
    pois = pois.loc[:, list(POI_COLUMNS)]

    bad = ~ok
    quarantine = pd.DataFrame(
        {
            COL_CITY: pd.Series([city.key] * int(bad.sum()), dtype=object),
            COL_SOURCE_ROW: pd.Series(source_row[bad], dtype=np.int64),
            COL_POI_ID: pd.Series(ids[bad].to_numpy(), dtype=object),
            "field": pd.Series(where[bad], dtype=object),
            "reason": pd.Series(reason[bad], dtype=object),
            "raw_json": pd.Series(_raw_json(kept.loc[bad]), dtype=object),
        }
    ).loc[:, list(store.QUARANTINE_COLUMNS)]

    counts = quarantine["reason"].value_counts()
    report = IngestReport(
        city=city.key,
        snapshot_hash=snapshot_hash,
        metric_epsg=metric_epsg,
        rows_read=len(raw),
        rows_filtered_out=sum(filtered_by.values()),
        rows_valid=len(pois),
        rows_quarantined=len(quarantine),
        filtered_by=filtered_by,
        quarantined_by={str(k): int(v) for k, v in counts.items()},
        bounds_m=bounds,
    )
    return NormalisedPois(pois=pois, quarantine=quarantine, report=report)


# --------------------------------------------------------------------------- ingest


def ingest_city(
    con: duckdb.DuckDBPyConnection,
    city: CitySpec,
    data_root: Path,
    desc_cfg: DescriptionConfig | None = None,
) -> IngestReport:
    """Fingerprint, read, normalise and store one city's snapshot; replaces its previous rows.

    The returned report's ``seconds`` is the whole ingest's wall time; the ``ingest_log`` row
    (written inside the transaction) holds the time up to the write.

    Raises:
        FileNotFoundError: the snapshot (or the boundary) file is missing.
        SnapshotFormatError: the snapshot cannot be parsed.
        EmptySnapshotError: no row survived filtering and validation; the store is unchanged.
    """
    start = time.perf_counter()
    cfg = desc_cfg or DescriptionConfig()
    path = city.snapshot_path(data_root)
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "POI snapshot not found", str(path))
    snapshot_hash = file_hash(path)
    raw = read_snapshot(path, city.snapshot)
    result = normalise_pois(raw, city, data_root, cfg, snapshot_hash)
    if result.report.rows_valid == 0:
        raise EmptySnapshotError(f"{city.key}: no valid POI in {path} ({result.report.to_dict()})")
    report = replace(result.report, source_path=str(path), seconds=time.perf_counter() - start)
    store.write_city_pois(con, city.key, result.pois, result.quarantine, report)
    return replace(report, seconds=time.perf_counter() - start)
