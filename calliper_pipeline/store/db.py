"""DuckDB plumbing shared by every store writer and reader: opening a file, the one
transaction helper, whether a table exists, exposing a frame to SQL.

Every write that must be all-or-nothing goes through :func:`transaction`; nothing else in the
library issues ``BEGIN``/``COMMIT``/``ROLLBACK``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import duckdb


def connect(path: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open (creating its folder if needed) the DuckDB file at ``path``."""
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    return duckdb.connect(str(path), read_only=read_only)


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """``BEGIN`` ... ``COMMIT`` around the block; ``ROLLBACK`` and re-raise if it raises.

    So a failed write leaves the tables exactly as they were. Also rolls back when ``COMMIT``
    itself fails. Must not be entered inside an open transaction on ``con`` (DuckDB has no
    nested transactions; ``BEGIN`` then raises).
    """
    con.begin()
    try:
        yield con
        con.commit()
    except BaseException:
        with suppress(duckdb.Error):  # already ended (e.g. a failed COMMIT): keep the cause
            con.rollback()
        raise


def table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Whether ``table`` exists in the connection's current database and schema."""
    rows = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ? "
        "AND table_schema = current_schema() AND table_catalog = current_database()",
        [table],
    ).fetchall()
    return bool(rows[0][0])


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, data: Any) -> Iterator[str]:
    """Expose a DataFrame or Arrow table to SQL under a unique view name for the block."""
    name = f"_frame_{uuid.uuid4().hex}"
    con.register(name, data)
    try:
        yield name
    finally:
        con.unregister(name)
