"""Which DuckDB file holds a city: one file per city, behind one small interface.

Every reader and writer asks a :class:`Store` for a city's connection
(``store.connect(city_key)``) and never builds a path itself. :class:`DuckDBFileStore`, the
only implementation, keeps each city in ``<root>/<city>.duckdb`` (``root`` is
``<CALLIPER_HOME>/store``), so two cities ingested or trained at once by two processes never
wait for each other's DuckDB file lock; only two processes on the *same* city take turns
(:func:`calliper_pipeline.store.db.connect` waits for the lock). A shared warehouse (Postgres, or
MotherDuck-style attached storage) would be a second implementation of the same two methods;
nothing else would change.

Older homes kept every city in one ``<CALLIPER_HOME>/warehouse.duckdb``. The first time a city's
file is asked for and does not exist yet, its rows (every table with a ``city`` column, filtered
to the city, plus the city-less text-embedding cache) are copied from that legacy file into a
temporary file that is then renamed into place, so an interrupted migration leaves no
half-filled city file and is simply redone. The legacy file is only read, never changed; a
warning names both files.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import duckdb

from calliper_pipeline.cities.spec import validate_city_key
from calliper_pipeline.store.db import connect, transaction

logger = logging.getLogger(__name__)

#: The file that held every city before per-city files (read once per city to migrate it).
LEGACY_WAREHOUSE = "warehouse.duckdb"
#: The folder of the per-city files, under ``CALLIPER_HOME``.
STORE_DIR = "store"
_SUFFIX = ".duckdb"


class Store(Protocol):
    """Where a city's tables live. The rest of the code asks this, never for a path."""

    def connect(
        self, city_key: str, read_only: bool = False
    ) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        """A connection to ``city_key``'s tables for the block, closed afterwards."""
        ...

    def cities(self) -> list[str]:
        """The keys of the cities that have stored anything, sorted."""
        ...


@dataclass(frozen=True)
class DuckDBFileStore:
    """One DuckDB file per city: ``<root>/<city_key>.duckdb``.

    Args:
        root: folder of the per-city files (created on the first write).
        legacy: an older home's single warehouse file to migrate cities from (None: none).
        timeout_s: how long to wait for another process's lock on a city's file, seconds
            (None: :func:`calliper_pipeline.store.db.lock_timeout_s`).
    """

    root: Path
    legacy: Path | None = None
    timeout_s: float | None = None

    def path_for(self, city_key: str) -> Path:
        """The city's file (validates the key: it becomes a file name)."""
        return Path(self.root) / f"{validate_city_key(city_key, 'store')}{_SUFFIX}"

    @contextmanager
    def connect(
        self, city_key: str, read_only: bool = False
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the city's file for the block (migrated first if needed)."""
        path = self.path_for(city_key)
        if not path.exists() and self.legacy is not None and Path(self.legacy).exists():
            migrate_city(Path(self.legacy), city_key, path, self.timeout_s)
        con = connect(path, read_only=read_only, timeout_s=self.timeout_s)
        try:
            yield con
        finally:
            con.close()

    def cities(self) -> list[str]:
        root = Path(self.root)
        if not root.is_dir():
            return []
        return sorted(p.name.removesuffix(_SUFFIX) for p in root.glob(f"*{_SUFFIX}"))


def for_home(home: Path, timeout_s: float | None = None) -> DuckDBFileStore:
    """The store of a ``CALLIPER_HOME``: ``<home>/store/<city>.duckdb``, migrating from
    ``<home>/warehouse.duckdb`` when an older home has one."""
    home = Path(home)
    return DuckDBFileStore(home / STORE_DIR, home / LEGACY_WAREHOUSE, timeout_s)


def _catalog(con: duckdb.DuckDBPyConnection) -> str:
    return str(con.execute("SELECT current_database()").fetchone()[0])  # type: ignore[index]


def _tables(con: duckdb.DuckDBPyConnection, catalog: str) -> dict[str, list[str]]:
    rows = con.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_catalog = ? AND table_schema = 'main' ORDER BY table_name, ordinal_position",
        [catalog],
    ).fetchall()
    out: dict[str, list[str]] = {}
    for table, column in rows:
        out.setdefault(table, []).append(column)
    return out


def _ensure_known_schemas(con: duckdb.DuckDBPyConnection) -> None:
    """Create every table the library knows (with keys and constraints) before copying rows."""
    from calliper_pipeline.store import experiments, metrics, schema

    schema.ensure_poi_schema(con)
    schema.ensure_text_schema(con)
    schema.ensure_mix_schema(con)
    metrics.ensure_schema(con)
    experiments.ensure_schema(con)


def migrate_city(legacy: Path, city_key: str, target: Path, timeout_s: float | None = None) -> int:
    """Copy ``city_key``'s rows from the single ``legacy`` warehouse into ``target``.

    Tables with a ``city`` column are filtered to the city; tables without one (the text
    embedding cache) are copied whole. Written to ``<target>.migrating`` and renamed, so the
    target appears complete or not at all. Nothing is written when the legacy file holds no row
    of the city (a new city starts empty). Returns the rows copied.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".migrating")
    partial.unlink(missing_ok=True)
    with connect(legacy, read_only=True, timeout_s=timeout_s) as src:
        tables = _tables(src, _catalog(src))
        city_tables = [t for t, cols in tables.items() if "city" in cols]
        has_city = any(
            src.execute(f'SELECT count(*) FROM "{t}" WHERE city = ?', [city_key]).fetchone()[0]  # type: ignore[index]
            for t in city_tables
        )
    if not has_city:
        return 0
    copied = 0
    with connect(partial, timeout_s=timeout_s) as con:
        _ensure_known_schemas(con)
        con.execute(f"ATTACH '{legacy}' AS legacy (READ_ONLY)")
        known = _tables(con, _catalog(con))
        with transaction(con):
            for table, cols in tables.items():
                where = " WHERE city = ?" if "city" in cols else ""
                params = [city_key] if where else []
                if table in known:
                    shared = ", ".join(f'"{c}"' for c in cols if c in known[table])
                    sql = f'INSERT INTO "{table}" ({shared}) SELECT {shared} FROM legacy."{table}"'
                else:
                    sql = f'CREATE TABLE "{table}" AS SELECT * FROM legacy."{table}"'
                con.execute(sql + where, params)
                copied += con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]  # type: ignore[index]
        con.execute("DETACH legacy")
        con.execute("CHECKPOINT")
    os.replace(partial, target)
    logger.warning(
        "migrated city %r (%d rows) from the single warehouse %s to its own file %s; "
        "the old file is no longer written (delete it once every city has moved)",
        city_key, copied, legacy, target,
    )  # fmt: skip
    return copied
