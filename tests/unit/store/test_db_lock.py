"""Two processes on one DuckDB file: :func:`connect` waits for the other's lock, then opens;
past its timeout it raises a one-line StoreLockedError naming the file."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from calliper_pipeline.errors import StoreLockedError
from calliper_pipeline.store.db import connect, lock_timeout_s

_HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.execute("INSERT INTO t VALUES (1)")
con.close()
"""


def _hold(path: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_connect_waits_for_another_process(tmp_path: Path, caplog):
    path = tmp_path / "w.duckdb"
    holder = _hold(path, 1.5)
    start = time.monotonic()
    with caplog.at_level("WARNING"), connect(path, timeout_s=30) as con:
        waited = time.monotonic() - start
        # the holder's insert committed before we got the file
        assert con.execute("SELECT count(*) FROM t").fetchone() == (1,)
    holder.wait(timeout=30)
    assert waited >= 0.5
    assert any("in use by another process" in r.getMessage() for r in caplog.records)


def test_connect_gives_up_with_a_clear_error(tmp_path: Path):
    path = tmp_path / "w.duckdb"
    holder = _hold(path, 5)
    try:
        with pytest.raises(StoreLockedError) as err:
            connect(path, read_only=True, timeout_s=0.5)
    finally:
        holder.kill()
        holder.wait()
    text = str(err.value)
    assert str(path) in text and "CALLIPER_LOCK_TIMEOUT_S" in text and "\n" not in text


def test_lock_timeout_from_environment(monkeypatch):
    monkeypatch.setenv("CALLIPER_LOCK_TIMEOUT_S", "12.5")
    assert lock_timeout_s() == 12.5
    monkeypatch.setenv("CALLIPER_LOCK_TIMEOUT_S", "soon")
    with pytest.raises(StoreLockedError, match="not a number"):
        lock_timeout_s()
