"""The DDL of the DuckDB store, in one place: POIs, quarantine, ingest log, the text-embedding
cache and the category-mix log (the evaluation table's is in :mod:`.metrics`, the
experiment grid's in :mod:`.experiments`).

Each ``ensure_*`` function is idempotent (``CREATE TABLE IF NOT EXISTS``, then columns added
after the first release with ``ADD COLUMN IF NOT EXISTS``, NULL in old rows).
"""

from __future__ import annotations

import duckdb

from calliper_pipeline.constants import (
    COL_SOURCE,
    INGEST_LOG_TABLE,
    POIS_TABLE,
    QUARANTINE_TABLE,
    TEXT_EMBEDDINGS_TABLE,
)

#: Category shares of every ingest (one row per (ingest, category)), for drift checks.
MIX_TABLE = "category_mix_log"

_POIS_DDL = f"""
CREATE TABLE IF NOT EXISTS {POIS_TABLE} (
    city VARCHAR NOT NULL,
    poi_id VARCHAR NOT NULL,
    name VARCHAR,
    category VARCHAR NOT NULL,
    category_group VARCHAR,
    description VARCHAR NOT NULL,
    text_hash VARCHAR NOT NULL,
    lon DOUBLE NOT NULL,
    lat DOUBLE NOT NULL,
    x_m DOUBLE NOT NULL,
    y_m DOUBLE NOT NULL,
    source_row BIGINT NOT NULL,
    snapshot_hash VARCHAR NOT NULL,
    source VARCHAR
)"""

_QUARANTINE_DDL = f"""
CREATE TABLE IF NOT EXISTS {QUARANTINE_TABLE} (
    city VARCHAR NOT NULL,
    source_row BIGINT NOT NULL,
    poi_id VARCHAR,
    field VARCHAR,
    reason VARCHAR NOT NULL,
    raw_json VARCHAR,
    source VARCHAR
)"""

_INGEST_LOG_DDL = f"""
CREATE TABLE IF NOT EXISTS {INGEST_LOG_TABLE} (
    ingest_id BIGINT NOT NULL,
    city VARCHAR NOT NULL,
    snapshot_hash VARCHAR NOT NULL,
    source_path VARCHAR,
    metric_epsg INTEGER NOT NULL,
    rows_read BIGINT NOT NULL,
    rows_filtered_out BIGINT NOT NULL,
    rows_valid BIGINT NOT NULL,
    rows_quarantined BIGINT NOT NULL,
    filtered_by VARCHAR NOT NULL,
    quarantined_by VARCHAR NOT NULL,
    seconds DOUBLE,
    ingested_at TIMESTAMP NOT NULL,
    rows_duplicate BIGINT,
    sources VARCHAR
)"""

# Columns added after the first release: tables created before get them (NULL in old rows).
_ADDED_COLUMNS = (
    (POIS_TABLE, COL_SOURCE, "VARCHAR"),
    (QUARANTINE_TABLE, COL_SOURCE, "VARCHAR"),
    (INGEST_LOG_TABLE, "rows_duplicate", "BIGINT"),
    (INGEST_LOG_TABLE, "sources", "VARCHAR"),
    (INGEST_LOG_TABLE, "cleaned_by", "VARCHAR"),
    (INGEST_LOG_TABLE, "warnings", "VARCHAR"),
)

# ``embedding`` is a variable-length FLOAT[] so encoders of different widths share the table.
_TEXT_EMBEDDINGS_DDL = f"""
CREATE TABLE IF NOT EXISTS {TEXT_EMBEDDINGS_TABLE} (
    encoder_id VARCHAR NOT NULL,
    text_hash VARCHAR NOT NULL,
    text VARCHAR NOT NULL,
    dim INTEGER NOT NULL,
    embedding FLOAT[] NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (encoder_id, text_hash)
)"""

_MIX_DDL = f"""
CREATE TABLE IF NOT EXISTS {MIX_TABLE} (
    city VARCHAR NOT NULL,
    ingest_id BIGINT NOT NULL,
    snapshot_hash VARCHAR NOT NULL,
    category VARCHAR NOT NULL,
    share DOUBLE NOT NULL,
    recorded_at TIMESTAMP NOT NULL
)"""


def ensure_poi_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the POI, quarantine and ingest-log tables if absent; add newer columns."""
    for ddl in (_POIS_DDL, _QUARANTINE_DDL, _INGEST_LOG_DDL):
        con.execute(ddl)
    for table, column, sql_type in _ADDED_COLUMNS:
        con.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {sql_type}")


def ensure_text_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the ``text_embeddings`` cache table if absent, keyed by (encoder_id, text_hash)."""
    con.execute(_TEXT_EMBEDDINGS_DDL)


def ensure_mix_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the ``category_mix_log`` table if absent."""
    con.execute(_MIX_DDL)
