"""store.db: the one transaction helper (all or nothing), table_exists, registered."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from calliper_pipeline.store.db import connect, registered, table_exists, transaction


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = connect(tmp_path / "sub" / "t.duckdb")
    connection.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v VARCHAR)")
    connection.execute("INSERT INTO t VALUES (1, 'before')")
    yield connection
    connection.close()


def rows(con: duckdb.DuckDBPyConnection) -> list[tuple[int, str]]:
    return [(int(k), str(v)) for k, v in con.execute("SELECT k, v FROM t ORDER BY k").fetchall()]


def test_commits_the_block(con: duckdb.DuckDBPyConnection) -> None:
    with transaction(con) as tx:
        assert tx is con
        con.execute("DELETE FROM t")
        con.execute("INSERT INTO t VALUES (2, 'a'), (3, 'b')")
    assert rows(con) == [(2, "a"), (3, "b")]


def test_rolls_back_on_exception_no_half_written_rows(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(RuntimeError, match="boom"), transaction(con):
        con.execute("DELETE FROM t")
        con.execute("INSERT INTO t VALUES (2, 'half')")
        raise RuntimeError("boom")
    assert rows(con) == [(1, "before")]
    # the connection is usable again: no transaction left open
    with transaction(con):
        con.execute("INSERT INTO t VALUES (4, 'after')")
    assert rows(con) == [(1, "before"), (4, "after")]


def test_rolls_back_on_a_failing_statement(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(duckdb.ConstraintException), transaction(con):
        con.execute("INSERT INTO t VALUES (5, 'new')")
        con.execute("INSERT INTO t VALUES (1, 'duplicate key')")
    assert rows(con) == [(1, "before")]


def test_rolls_back_on_keyboard_interrupt(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(KeyboardInterrupt), transaction(con):
        con.execute("UPDATE t SET v = 'changed'")
        raise KeyboardInterrupt
    assert rows(con) == [(1, "before")]


def test_nested_transaction_is_refused(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(duckdb.TransactionException), transaction(con), transaction(con):
        pass
    assert rows(con) == [(1, "before")]


def test_table_exists_and_registered(con: duckdb.DuckDBPyConnection) -> None:
    assert table_exists(con, "t") and not table_exists(con, "nope")
    with registered(con, pd.DataFrame({"x": [1, 2, 3]})) as view:
        assert con.execute(f"SELECT sum(x) FROM {view}").fetchall()[0][0] == 6
    assert not table_exists(con, view)
