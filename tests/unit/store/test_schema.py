"""store.schema: every table's DDL is idempotent; writers use only store.db.transaction."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from calliper_pipeline.constants import (
    INGEST_LOG_TABLE,
    POIS_TABLE,
    QUARANTINE_TABLE,
    TEXT_EMBEDDINGS_TABLE,
)
from calliper_pipeline.store.db import table_exists
from calliper_pipeline.store.schema import (
    MIX_TABLE,
    ensure_mix_schema,
    ensure_poi_schema,
    ensure_text_schema,
)

PACKAGE = Path(__file__).resolve().parents[3] / "calliper_pipeline"


def test_ensure_functions_are_idempotent() -> None:
    con = duckdb.connect()
    for _ in range(2):
        ensure_poi_schema(con)
        ensure_text_schema(con)
        ensure_mix_schema(con)
    for table in (POIS_TABLE, QUARANTINE_TABLE, INGEST_LOG_TABLE, TEXT_EMBEDDINGS_TABLE, MIX_TABLE):
        assert table_exists(con, table), table


def test_ddl_and_transactions_live_in_store() -> None:
    """CREATE TABLE only under store/; the writers issue no BEGIN/COMMIT/ROLLBACK of their
    own (they use store.db.transaction)."""
    create = re.compile(r"CREATE\s+TABLE", re.IGNORECASE)
    offenders = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if p.parent.name != "store" and create.search(p.read_text(encoding="utf-8"))
    ]
    assert offenders == []
    tx = re.compile(r"\.(begin|commit|rollback)\(\)|BEGIN TRANSACTION|\"COMMIT\"|\"ROLLBACK\"")
    for rel in ("store/pois.py", "text/cache.py", "ingest/quality.py"):
        assert not tx.search((PACKAGE / rel).read_text(encoding="utf-8")), rel
