"""DuckDB store of normalised POIs: schema, idempotent per-city writes, reads.

Three tables, all keyed by city:

- ``pois`` (:data:`constants.POI_COLUMNS`): one row per valid POI, unique on (city, poi_id);
  ``lon``/``lat`` WGS84 degrees, ``x_m``/``y_m`` metres in the city's metric CRS. Uniqueness is
  checked inside the write transaction rather than by a PRIMARY KEY: DuckDB's index makes
  deleting and re-inserting a city's 72k London rows in one transaction ~10x slower.
- ``pois_quarantine``: rows rejected on reading or by validation, with the source column
  (``field``) and the reason, and the raw row as JSON.
- ``ingest_log``: one row per ingest (append-only): counts, snapshot hash, metric EPSG, time,
  near-duplicates dropped, the per-source counts as JSON (``sources``), the rows whose text
  was repaired by repair (``cleaned_by``) and the ingest's warnings (a JSON list).

``source`` (in ``pois`` and ``pois_quarantine``) names the POI source a row came from (a city
may merge several; ``source_row`` is the row in that source's file). Tables created before
these columns existed get them on :func:`.schema.ensure_poi_schema` (NULL in old rows).

A city's rows in ``pois`` and ``pois_quarantine`` are replaced in one transaction, so a re-run
replaces rather than duplicates, and a failed write leaves the previous rows untouched.
Coordinates are plain DOUBLE columns (the spatial extension downloads at run time).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import duckdb
import pandas as pd

from calliper_pipeline.constants import (
    COL_CATEGORY,
    COL_CITY,
    COL_POI_ID,
    COL_SOURCE,
    COL_SOURCE_ROW,
    INGEST_LOG_TABLE,
    POI_COLUMNS,
    POIS_TABLE,
    QUARANTINE_TABLE,
)
from calliper_pipeline.store.db import registered, table_exists, transaction
from calliper_pipeline.store.schema import ensure_poi_schema

if TYPE_CHECKING:
    from calliper_pipeline.ingest.report import IngestReport

QUARANTINE_COLUMNS: tuple[str, ...] = (
    COL_CITY,
    COL_SOURCE_ROW,
    COL_POI_ID,
    "field",
    "reason",
    "raw_json",
    COL_SOURCE,
)

_LOG_JSON_FIELDS = ("filtered_by", "quarantined_by", "sources", "cleaned_by", "warnings")


def _insert_frame(
    con: duckdb.DuckDBPyConnection, table: str, df: pd.DataFrame, columns: tuple[str, ...]
) -> None:
    if df.empty:
        return
    cols = ", ".join(f'"{c}"' for c in columns)
    with registered(con, df) as view:
        con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {view}")


def _insert_ingest_log(con: duckdb.DuckDBPyConnection, city_key: str, report: IngestReport) -> None:
    con.execute(
        f"""
        INSERT INTO {INGEST_LOG_TABLE} (ingest_id, city, snapshot_hash, source_path,
            metric_epsg, rows_read, rows_filtered_out, rows_valid, rows_quarantined,
            filtered_by, quarantined_by, seconds, ingested_at, rows_duplicate, sources,
            cleaned_by, warnings)
        SELECT coalesce((SELECT max(ingest_id) FROM {INGEST_LOG_TABLE}), 0) + 1,
               ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?
        """,
        [
            city_key,
            report.snapshot_hash,
            report.source_path,
            report.metric_epsg,
            report.rows_read,
            report.rows_filtered_out,
            report.rows_valid,
            report.rows_quarantined,
            json.dumps(report.filtered_by, sort_keys=True),
            json.dumps(report.quarantined_by, sort_keys=True),
            report.seconds,
            datetime.now(UTC).replace(tzinfo=None),
            report.rows_duplicate,
            json.dumps(report.sources, sort_keys=True),
            json.dumps(report.cleaned_by, sort_keys=True),
            json.dumps(list(report.warnings)),
        ],
    )


def _check_unique_ids(con: duckdb.DuckDBPyConnection, city_key: str) -> None:
    # fetchall, not fetchone: DuckDB 2 refuses new work while a result is left unfinished.
    (dups,) = con.execute(
        f"SELECT count(*) - count(DISTINCT {COL_POI_ID}) FROM {POIS_TABLE} WHERE city = ?",
        [city_key],
    ).fetchall()[0]
    if dups:
        raise ValueError(f"{city_key}: {dups} duplicate poi_id value(s) in the POIs to write")


def _check_frame(df: pd.DataFrame, columns: tuple[str, ...], city_key: str, what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} frame lacks columns {missing}")
    if not df.empty and not (df[COL_CITY] == city_key).all():
        raise ValueError(f"{what} frame holds rows of a city other than {city_key!r}")


def write_city_pois(
    con: duckdb.DuckDBPyConnection,
    city_key: str,
    pois: pd.DataFrame,
    quarantine: pd.DataFrame,
    report: IngestReport,
) -> None:
    """Replace ``city_key``'s POIs and quarantine rows and log the ingest, in one transaction.

    Args:
        con: a writable connection (the schema is created if missing).
        city_key: the city whose rows are replaced; every row of both frames must carry it.
        pois: columns :data:`constants.POI_COLUMNS` (extra columns are ignored).
        quarantine: columns :data:`QUARANTINE_COLUMNS`.
        report: the ingest's counts, logged in ``ingest_log``.

    Raises:
        ValueError: a frame lacks columns, holds another city's rows, or repeats a poi_id
            (nothing is written).
        duckdb.Error: the write failed; the transaction was rolled back, so the tables hold
            exactly what they held before.
    """
    _check_frame(pois, POI_COLUMNS, city_key, "pois")
    _check_frame(quarantine, QUARANTINE_COLUMNS, city_key, "quarantine")
    ensure_poi_schema(con)
    with transaction(con):
        con.execute(f"DELETE FROM {POIS_TABLE} WHERE city = ?", [city_key])
        con.execute(f"DELETE FROM {QUARANTINE_TABLE} WHERE city = ?", [city_key])
        _insert_frame(con, POIS_TABLE, pois, POI_COLUMNS)
        _check_unique_ids(con, city_key)
        _insert_frame(con, QUARANTINE_TABLE, quarantine, QUARANTINE_COLUMNS)
        _insert_ingest_log(con, city_key, report)


def _select_city(
    con: duckdb.DuckDBPyConnection, table: str, columns: tuple[str, ...], city_key: str
) -> pd.DataFrame:
    if not table_exists(con, table):
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    cols = ", ".join(f'"{c}"' for c in columns)
    return con.execute(
        f"SELECT {cols} FROM {table} WHERE city = ? ORDER BY {COL_SOURCE_ROW}, {COL_POI_ID}",
        [city_key],
    ).df()


def read_city_pois(con: duckdb.DuckDBPyConnection, city_key: str) -> pd.DataFrame:
    """The city's valid POIs (columns :data:`constants.POI_COLUMNS`), in source-row order."""
    return _select_city(con, POIS_TABLE, POI_COLUMNS, city_key)


def read_quarantine(con: duckdb.DuckDBPyConnection, city_key: str) -> pd.DataFrame:
    """The city's quarantined rows (columns :data:`QUARANTINE_COLUMNS`), in source-row order."""
    return _select_city(con, QUARANTINE_TABLE, QUARANTINE_COLUMNS, city_key)


def latest_ingest(con: duckdb.DuckDBPyConnection, city_key: str) -> dict[str, Any] | None:
    """The city's most recent ``ingest_log`` row as a dict (JSON count maps decoded), or None."""
    if not table_exists(con, INGEST_LOG_TABLE):
        return None
    cur = con.execute(
        f"SELECT * FROM {INGEST_LOG_TABLE} WHERE city = ? ORDER BY ingest_id DESC LIMIT 1",
        [city_key],
    )
    rows = cur.fetchall()
    if not rows:
        return None
    out = dict(zip([d[0] for d in cur.description], rows[0], strict=True))
    for key in _LOG_JSON_FIELDS:  # absent in a store no newer ingest has migrated yet
        empty: Any = [] if key == "warnings" else {}
        out[key] = json.loads(out[key]) if out.get(key) is not None else empty
    return out


def city_category_mix(con: duckdb.DuckDBPyConnection, city_key: str) -> pd.Series:
    """Share of the city's POIs in each category (sums to 1; largest first; empty if none)."""
    if not table_exists(con, POIS_TABLE):
        return pd.Series(dtype=float, name="share")
    df = con.execute(
        f"""
        SELECT {COL_CATEGORY}, count(*) / sum(count(*)) OVER () AS share
        FROM {POIS_TABLE} WHERE city = ?
        GROUP BY {COL_CATEGORY} ORDER BY share DESC, {COL_CATEGORY}
        """,
        [city_key],
    ).df()
    return pd.Series(
        df["share"].to_numpy(dtype=float), index=pd.Index(df[COL_CATEGORY]), name="share"
    )
