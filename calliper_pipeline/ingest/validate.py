"""Filtering, validation, projection and description of a source's raw rows.

:func:`normalise_source` turns one source's raw frame (:func:`.readers.read_snapshot`) into
POI rows and quarantine rows: apply the source's filters (counted), validate every remaining
row (failures go to the quarantine with a reason), project to the metric CRS and to WGS84,
build descriptions and their text hashes. :func:`normalise_pois` does that for a city's primary
snapshot alone (the city's metric CRS and bounds resolved on the way).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from calliper_pipeline.cities.geo import city_bounds_m, project, resolve_metric_epsg
from calliper_pipeline.cities.spec import CitySpec, ColumnMap, SnapshotSpec
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
    COL_SOURCE,
    COL_SOURCE_ROW,
    COL_TEXT_HASH,
    COL_X,
    COL_Y,
    POI_COLUMNS,
    WGS84_EPSG,
)
from calliper_pipeline.errors import ConfigError, EmptySnapshotError, SnapshotFormatError
from calliper_pipeline.hashing import text_hash
from calliper_pipeline.ingest.descriptions import describe_frame
from calliper_pipeline.ingest.filters import apply_filters
from calliper_pipeline.ingest.ids import stable_ids
from calliper_pipeline.ingest.markers import (
    REASON_NOT_A_POINT,
    REASON_RAGGED_ROW,
    REPAIR_CONTROL_CHARACTERS,
)
from calliper_pipeline.ingest.readers import coordinate_columns, parse_coordinates
from calliper_pipeline.ingest.refused import raw_json, refused_quarantine, split_refused
from calliper_pipeline.ingest.report import IngestReport, SourceReport
from calliper_pipeline.store import pois as store

# Quarantine reasons, in the order rows are checked (a row gets the first that applies);
# rows refused on reading (REASON_RAGGED_ROW, REASON_NOT_A_POINT: see .markers) come first.
REASON_MISSING_ID = "missing id"
REASON_UNPARSEABLE_COORDINATES = "unparseable coordinates"
REASON_MISSING_COORDINATES = "missing coordinates"
REASON_NONFINITE_COORDINATES = "non-finite coordinates"
REASON_MISSING_CATEGORY = "missing category"
REASON_OUTSIDE_BOUNDS = "outside city bounds"
REASON_DUPLICATE_ID = "duplicate id"
QUARANTINE_REASONS = (
    REASON_RAGGED_ROW,
    REASON_NOT_A_POINT,
    REASON_MISSING_ID,
    REASON_UNPARSEABLE_COORDINATES,
    REASON_MISSING_COORDINATES,
    REASON_NONFINITE_COORDINATES,
    REASON_MISSING_CATEGORY,
    REASON_OUTSIDE_BOUNDS,
    REASON_DUPLICATE_ID,
)

Bounds = tuple[float, float, float, float]


@dataclass(frozen=True, eq=False)
class NormalisedPois:
    """Result of :func:`normalise_pois` / :func:`normalise_source`.

    ``pois``: exactly :data:`constants.POI_COLUMNS`, one row per valid POI in source order.
    ``quarantine``: :data:`store.QUARANTINE_COLUMNS` (city, source_row, poi_id, field, reason,
    raw_json, source), one row per rejected row. ``report``: the counts (an
    :class:`IngestReport` from :func:`normalise_pois`, a :class:`SourceReport` per source).
    """

    pois: pd.DataFrame
    quarantine: pd.DataFrame
    report: Any


# --------------------------------------------------------------------------- validation


def _clean_strings(values: pd.Series) -> pd.Series:
    """Stripped text as object dtype, None where missing or blank."""
    text = values.astype("string").str.strip()
    text = text.mask(text == "")
    out = text.astype(object)
    out[text.isna().to_numpy()] = None
    return out


def _none_series(index: pd.Index) -> pd.Series:
    return pd.Series(None, index=index, dtype=object)


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
    inside = _inside(*xy_m, bounds)
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


# --------------------------------------------------------------------------- normalising


def finite_points_wgs84(raw: pd.DataFrame, cols: ColumnMap) -> tuple[np.ndarray, np.ndarray]:
    """WGS84 lon, lat (degrees) of the raw rows whose two coordinates are finite numbers
    (anything else is skipped: validation reports it row by row)."""
    cx, cy = coordinate_columns(cols)
    a = pd.to_numeric(raw[cx], errors="coerce").to_numpy(dtype=float)
    b = pd.to_numeric(raw[cy], errors="coerce").to_numpy(dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    with np.errstate(invalid="ignore"):
        lon, lat = project(a[ok], b[ok], cols.source_epsg, WGS84_EPSG)
    return np.asarray(lon), np.asarray(lat)


def snapshot_metric_epsg(
    city: CitySpec, raw: pd.DataFrame, spec: SnapshotSpec | None = None
) -> int:
    """The city's metric EPSG for an ingest of ``raw`` (the primary snapshot's rows by default).

    :func:`cities.geo.resolve_metric_epsg` with the rows' finite coordinates (converted from
    the source CRS to WGS84) as the points whose median picks the UTM zone.

    Raises:
        EmptySnapshotError: no metric EPSG configured and nothing to locate the city by.
    """
    lon, lat = finite_points_wgs84(raw, (spec or city.snapshot).columns)
    try:
        return resolve_metric_epsg(city, points_wgs84=(lon, lat))
    except ConfigError as exc:
        raise EmptySnapshotError(
            f"{city.key}: no finite coordinates to choose a UTM zone from"
        ) from exc


@dataclass(frozen=True)
class _Checked:
    """A filtered source's rows, cleaned and checked: ``ok`` marks the valid ones."""

    kept: pd.DataFrame
    ids: pd.Series
    category: pd.Series
    xy_m: tuple[np.ndarray, np.ndarray]
    lonlat: tuple[np.ndarray, np.ndarray]
    reason: np.ndarray
    where: np.ndarray

    @property
    def ok(self) -> np.ndarray:
        return self.reason == None  # noqa: E711 (elementwise on an object array)


def _check(
    kept: pd.DataFrame,
    cols: ColumnMap,
    metric_epsg: int,
    bounds: Bounds,
    id_prefix: str,
    source: str = "",
) -> _Checked:
    cx, cy = coordinate_columns(cols)
    a, a_missing, _ = parse_coordinates(kept[cx])
    b, b_missing, _ = parse_coordinates(kept[cy])
    with np.errstate(invalid="ignore"):
        x_m, y_m = project(a, b, cols.source_epsg, metric_epsg)
        lon, lat = project(a, b, cols.source_epsg, WGS84_EPSG)
    if cols.poi_id:
        ids = _clean_strings(kept[cols.poi_id])
    else:
        name = kept[cols.name] if cols.name else None
        ids = stable_ids(source, name, kept[cols.category], lon, lat)  # see ingest/ids.py
    if id_prefix:
        ids = ids.map(lambda v: None if v is None else f"{id_prefix}{v}").astype(object)
    category = _clean_strings(kept[cols.category])
    coords = (a, b, a_missing, b_missing)
    reason, where = _validate(ids, category, coords, (x_m, y_m), cols, bounds)
    return _Checked(kept, ids, category, (x_m, y_m), (lon, lat), reason, where)


def _poi_frame(
    c: _Checked, cols: ColumnMap, city_key: str, source: str, data_hash: str
) -> pd.DataFrame:
    ok = c.ok
    kept = c.kept
    name = _clean_strings(kept[cols.name]) if cols.name else _none_series(kept.index)
    group = _clean_strings(kept[cols.group]) if cols.group else _none_series(kept.index)
    return pd.DataFrame(
        {
            COL_CITY: city_key,
            COL_POI_ID: c.ids[ok].to_numpy(),
            COL_NAME: name[ok].to_numpy(),
            COL_CATEGORY: c.category[ok].to_numpy(),
            COL_GROUP: group[ok].to_numpy(),
            COL_LON: c.lonlat[0][ok],
            COL_LAT: c.lonlat[1][ok],
            COL_X: c.xy_m[0][ok],
            COL_Y: c.xy_m[1][ok],
            COL_SOURCE_ROW: kept[COL_SOURCE_ROW].to_numpy(dtype=np.int64)[ok],
            COL_SNAPSHOT_HASH: data_hash,
            COL_SOURCE: source,
        },
        index=pd.RangeIndex(int(ok.sum())),
    )


def _quarantine_frame(c: _Checked, city_key: str, source: str) -> pd.DataFrame:
    bad = ~c.ok
    n = int(bad.sum())
    return pd.DataFrame(
        {
            COL_CITY: pd.Series([city_key] * n, dtype=object),
            COL_SOURCE_ROW: pd.Series(
                c.kept[COL_SOURCE_ROW].to_numpy(dtype=np.int64)[bad], dtype=np.int64
            ),
            COL_POI_ID: pd.Series(c.ids[bad].to_numpy(), dtype=object),
            "field": pd.Series(c.where[bad], dtype=object),
            "reason": pd.Series(c.reason[bad], dtype=object),
            "raw_json": pd.Series(raw_json(c.kept.loc[bad]), dtype=object),
            COL_SOURCE: pd.Series([source] * n, dtype=object),
        }
    ).loc[:, list(store.QUARANTINE_COLUMNS)]


def describe_pois(pois: pd.DataFrame, city: CitySpec, desc_cfg: DescriptionConfig) -> pd.DataFrame:
    """``pois`` with ``description`` and ``text_hash`` filled, in :data:`POI_COLUMNS` order."""
    pois = pois.copy()
    pois[COL_DESCRIPTION] = describe_frame(pois, city, desc_cfg).to_numpy(dtype=object)
    hashes = {t: text_hash(t) for t in pois[COL_DESCRIPTION].unique()}
    pois[COL_TEXT_HASH] = pois[COL_DESCRIPTION].map(hashes)
    return pois.loc[:, list(POI_COLUMNS)]


def normalise_source(
    raw: pd.DataFrame,
    city: CitySpec,
    source: str,
    spec: SnapshotSpec,
    metric_epsg: int,
    bounds: Bounds,
    data_hash: str,
    id_prefix: str = "",
    path: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, SourceReport]:
    """Filter, validate and project one source's raw rows (descriptions are not built here).

    Args:
        raw: :func:`.readers.read_snapshot`'s frame (without ``source_row``: 1..n).
        city: the city (its key goes on every row).
        source: the source's name (the ``source`` column); spec: how to read its columns.
        metric_epsg: the city's metric CRS; bounds: its (min_x, min_y, max_x, max_y) metres.
        data_hash: the ``snapshot_hash`` stored on every POI row.
        id_prefix: prepended to every id (``"fhrs:"``), so ids stay unique across sources.
        path: the source file, for messages (default: ``spec.path``).

    Returns:
        (POI rows without description/text_hash, quarantine rows in source-row order,
        counts). Rows the reader refused (``ragged row``, ``not a point``) are quarantined
        before any filter. Duplicate ids are detected among rows that pass every other check:
        the first *valid* row of an id is kept and the later ones are quarantined as
        ``duplicate id``. The rows whose text the reader cleaned are counted in ``cleaned_by``.

    Raises:
        SnapshotFormatError: latitude and longitude look swapped (see
            :func:`_refuse_swapped`).
    """
    if COL_SOURCE_ROW not in raw.columns:
        raw = raw.assign(**{COL_SOURCE_ROW: np.arange(1, len(raw) + 1, dtype=np.int64)})
    refused, readable, cleaned = split_refused(raw)
    kept, filtered_by = apply_filters(readable, spec.filters)
    checked = _check(kept, spec.columns, metric_epsg, bounds, id_prefix, source)
    _refuse_swapped(checked, spec.columns, metric_epsg, bounds, path or spec.path)
    pois = _poi_frame(checked, spec.columns, city.key, source, data_hash)
    quarantine = _quarantine_frame(checked, city.key, source)
    if len(refused):
        quarantine = pd.concat([refused_quarantine(refused, city.key, source), quarantine])
        quarantine = quarantine.sort_values(COL_SOURCE_ROW, kind="stable", ignore_index=True)
    counts = quarantine["reason"].value_counts()
    report = SourceReport(
        name=source,
        rows_read=len(raw),
        rows_filtered_out=sum(filtered_by.values()),
        rows_valid=len(pois),
        rows_quarantined=len(quarantine),
        filtered_by=filtered_by,
        quarantined_by={str(k): int(v) for k, v in counts.items()},
        cleaned_by={REPAIR_CONTROL_CHARACTERS: cleaned} if cleaned else {},
    )
    return pois, quarantine, report


def _refuse_swapped(
    c: _Checked, cols: ColumnMap, metric_epsg: int, bounds: Bounds, path: str
) -> None:
    """Refuse a geographic source whose lat and lon look exchanged.

    More than half of the rows with finite coordinates lie outside the city's bounds, and more
    than half inside when the two coordinate columns are exchanged.
    """
    from pyproj import CRS

    if not CRS.from_epsg(cols.source_epsg).is_geographic:
        return
    cx, cy = coordinate_columns(cols)
    a, _, _ = parse_coordinates(c.kept[cx])
    b, _, _ = parse_coordinates(c.kept[cy])
    finite = np.isfinite(a) & np.isfinite(b)
    n = int(finite.sum())
    if n == 0:
        return
    x, y = c.xy_m
    outside = int((finite & ~_inside(x, y, bounds)).sum())
    if outside * 2 <= n:
        return
    with np.errstate(invalid="ignore"):
        sx, sy = project(b[finite], a[finite], cols.source_epsg, metric_epsg)
    swapped_inside = int(_inside(sx, sy, bounds).sum())
    if swapped_inside * 2 > n:
        raise SnapshotFormatError(
            path,
            f"latitude and longitude look swapped: {outside} of {n} rows lie outside the city "
            f"but {swapped_inside} inside with {cx!r} and {cy!r} exchanged; exchange the two "
            "column names in the source's columns of the city file",
            field=f"{cx},{cy}",
        )


def _inside(x: np.ndarray, y: np.ndarray, bounds: Bounds) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return (x >= bounds[0]) & (x <= bounds[2]) & (y >= bounds[1]) & (y <= bounds[3])


def normalise_pois(
    raw: pd.DataFrame,
    city: CitySpec,
    data_root: Path,
    desc_cfg: DescriptionConfig,
    snapshot_hash: str,
) -> NormalisedPois:
    """Filter, validate, project and describe the city's primary snapshot alone.

    Args:
        raw: :func:`.readers.read_snapshot`'s frame of ``city.snapshot``.
        city: the city; its ColumnMap names the source columns.
        data_root: folder the city's relative paths (boundary) resolve against.
        desc_cfg: description variant and lower-casing.
        snapshot_hash: stored on every POI row.

    The metric CRS is :func:`snapshot_metric_epsg` of ``raw`` after filtering; the bounds are
    :func:`cities.geo.city_bounds_m`. See :func:`normalise_source` for the checks.
    """
    if COL_SOURCE_ROW not in raw.columns:
        raw = raw.assign(**{COL_SOURCE_ROW: np.arange(1, len(raw) + 1, dtype=np.int64)})
    metric_epsg = snapshot_metric_epsg(city, apply_filters(raw, city.snapshot.filters)[0])
    bounds = city_bounds_m(city, data_root, metric_epsg)
    pois, quarantine, source_report = normalise_source(
        raw, city, city.primary_source, city.snapshot, metric_epsg, bounds, snapshot_hash
    )
    report = IngestReport.combine(city.key, snapshot_hash, metric_epsg, [source_report], bounds)
    return NormalisedPois(describe_pois(pois, city, desc_cfg), quarantine, report)
