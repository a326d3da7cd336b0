"""DuckDB plumbing shared by every store writer and reader: opening a file, the one
transaction helper, whether a table exists, exposing a frame to SQL.

DuckDB lets one process write a file (or several read it) at a time. Two cities ingested or
trained at once by two processes (two CLI runs, or the CLI beside Dagster) therefore take turns:
:func:`connect` waits for another process's lock, saying so once, for up to
``CALLIPER_LOCK_TIMEOUT_S`` seconds (default :data:`DEFAULT_LOCK_TIMEOUT_S`), then raises
:class:`~calliper_pipeline.errors.StoreLockedError`. Every step holds its connection only while
it reads or writes, never while it trains, so the wait is seconds.

Every write that must be all-or-nothing goes through :func:`transaction`; nothing else in the
library issues ``BEGIN``/``COMMIT``/``ROLLBACK``.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import duckdb

from calliper_pipeline.errors import StoreLockedError

logger = logging.getLogger(__name__)

#: How long :func:`connect` waits for another process's lock on the file, seconds.
DEFAULT_LOCK_TIMEOUT_S = 600.0
_LOCK_TIMEOUT_ENV = "CALLIPER_LOCK_TIMEOUT_S"
_POLL_S = 0.2
#: What :func:`connect` logs (once) when it has to wait for another process's lock.
WAITING = "is in use by another process; waiting"


def lock_timeout_s() -> float:
    """``CALLIPER_LOCK_TIMEOUT_S`` when set (seconds, >= 0), else the default."""
    raw = os.environ.get(_LOCK_TIMEOUT_ENV)
    if raw is None or raw == "":
        return DEFAULT_LOCK_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise StoreLockedError(f"{_LOCK_TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    return max(value, 0.0)


def _is_lock_error(exc: duckdb.Error) -> bool:
    return "lock" in str(exc).lower()


def connect(
    path: Path, read_only: bool = False, timeout_s: float | None = None
) -> duckdb.DuckDBPyConnection:
    """Open (creating its folder if needed) the DuckDB file at ``path``.

    When another process holds the file's lock, wait for it (polling every 0.2 s) for up to
    ``timeout_s`` seconds (default :func:`lock_timeout_s`), logging once that we wait.

    Raises:
        StoreLockedError: still locked after ``timeout_s``; the message names the file and the
            process DuckDB reports as the holder.
    """
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    limit = lock_timeout_s() if timeout_s is None else timeout_s
    deadline = time.monotonic() + limit
    waited = False
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if not _is_lock_error(exc):
                raise
            if time.monotonic() >= deadline:
                holder = str(exc).split("Conflicting lock is held in", 1)[-1].strip()
                raise StoreLockedError(
                    f"{path} is locked by another process ({holder[:160]}) and stayed locked "
                    f"for {limit:.0f} s; wait for it to finish or raise {_LOCK_TIMEOUT_ENV}"
                ) from None
            if not waited:
                logger.warning("%s %s up to %.0f s for it", path, WAITING, limit)
                waited = True
            time.sleep(_POLL_S)
            continue
        if waited:
            logger.info("%s is free again; continuing", path)
        return con


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
