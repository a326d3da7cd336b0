"""One DuckDB file per city: two cities write at once from two processes without waiting for
each other's lock (one city still takes turns), re-ingesting one city leaves the other's file
byte-for-byte untouched, and an older home's single warehouse.duckdb is migrated city by city."""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from calliper_pipeline.constants import POIS_TABLE, TEXT_EMBEDDINGS_TABLE
from calliper_pipeline.errors import ConfigError
from calliper_pipeline.steps.embed import embed
from calliper_pipeline.steps.ingest import ingest
from calliper_pipeline.store import pois as store
from calliper_pipeline.store.city_store import LEGACY_WAREHOUSE, for_home
from calliper_pipeline.store.db import connect
from calliper_pipeline.text.encoders import build_text_encoder
from tests.support.paths import REPO_ROOT
from tests.support.synthetic import make_synthetic_city

HOLD_S = 2.0

# Opens its city's file for writing with no patience for a lock (timeout 0), holds it HOLD_S.
_WRITER = """
import sys, time
from pathlib import Path
from calliper_pipeline.store.city_store import for_home
from calliper_pipeline.errors import StoreLockedError
home, city, hold = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
try:
    with for_home(home, timeout_s=0).connect(city) as con:
        con.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
        print("open", time.monotonic(), flush=True)
        time.sleep(hold)
        con.execute("INSERT INTO t VALUES (1)")
        print("done", time.monotonic(), flush=True)
except StoreLockedError as exc:
    print("locked", exc, flush=True)
    sys.exit(3)
"""


def _writer(home: Path, city: str, hold: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(home), city, str(hold)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _times(out: str) -> dict[str, float]:
    return {line.split()[0]: float(line.split()[1]) for line in out.splitlines() if line}


def _digest(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def test_two_cities_write_at_once_from_two_processes(tmp_path: Path) -> None:
    procs = {city: _writer(tmp_path, city, HOLD_S) for city in ("alpha", "beta")}
    outs = {city: p.communicate(timeout=120)[0] for city, p in procs.items()}
    assert {city: p.returncode for city, p in procs.items()} == {"alpha": 0, "beta": 0}, outs
    a, b = _times(outs["alpha"]), _times(outs["beta"])
    # both held their file for writing at the same time: each opened before the other finished
    assert a["open"] < b["done"] and b["open"] < a["done"], outs
    assert for_home(tmp_path).cities() == ["alpha", "beta"]
    for city in ("alpha", "beta"):
        with for_home(tmp_path).connect(city, read_only=True) as con:
            assert con.execute("SELECT count(*) FROM t").fetchone() == (1,)


def test_one_city_from_two_processes_still_takes_turns(tmp_path: Path) -> None:
    first = _writer(tmp_path, "alpha", 4 * HOLD_S)
    assert first.stdout is not None and first.stdout.readline().startswith("open")
    second = _writer(tmp_path, "alpha", 0.0)
    out = second.communicate(timeout=120)[0]
    first.communicate(timeout=120)
    assert second.returncode == 3, out
    assert str(for_home(tmp_path).path_for("alpha")) in out


def _ingest(home: Path, root: Path, key: str, n: int, seed: int) -> None:
    city = make_synthetic_city(root / key, n_pois=n, seed=seed, key=key, evaluation=False)
    with for_home(home).connect(key) as con:
        ingest(con, city, root)
        embed(con, city, build_text_encoder("hashing"))


def test_a_changed_snapshot_of_one_city_leaves_the_other_file_untouched(tmp_path: Path) -> None:
    home, root = tmp_path / "home", tmp_path / "data"
    _ingest(home, root, "alpha", 300, seed=0)
    _ingest(home, root, "beta", 400, seed=1)
    beta_file = for_home(home).path_for("beta")
    before = _digest(beta_file)
    alpha_before = _digest(for_home(home).path_for("alpha"))
    time.sleep(0.05)  # a rewrite of beta would show in its mtime
    _ingest(home, root, "alpha", 350, seed=2)  # a new snapshot of alpha
    assert _digest(beta_file) == before
    assert _digest(for_home(home).path_for("alpha"))[0] != alpha_before[0]
    with for_home(home).connect("alpha", read_only=True) as con:
        assert len(store.read_city_pois(con, "alpha")) == 350


def _legacy_home(tmp_path: Path) -> Path:
    """An older home: both cities ingested and embedded into one warehouse.duckdb."""
    home, root = tmp_path / "home", tmp_path / "data"
    for key, n, seed in (("alpha", 300, 0), ("beta", 400, 1)):
        city = make_synthetic_city(root / key, n_pois=n, seed=seed, key=key, evaluation=False)
        with connect(home / LEGACY_WAREHOUSE) as con:
            ingest(con, city, root)
            embed(con, city, build_text_encoder("hashing"))
    return home


def test_an_older_single_warehouse_is_migrated_city_by_city(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = _legacy_home(tmp_path)
    legacy = home / LEGACY_WAREHOUSE
    legacy_before = _digest(legacy)
    with connect(legacy, read_only=True) as con:
        n_texts = con.execute(f"SELECT count(*) FROM {TEXT_EMBEDDINGS_TABLE}").fetchone()
    city_store = for_home(home)
    with caplog.at_level(logging.WARNING), city_store.connect("alpha", read_only=True) as con:
        assert len(store.read_city_pois(con, "alpha")) == 300
        assert store.read_city_pois(con, "beta").empty  # only alpha's rows came over
        assert store.latest_ingest(con, "alpha") is not None
        assert con.execute(f"SELECT count(*) FROM {TEXT_EMBEDDINGS_TABLE}").fetchone() == n_texts
    notes = [r.getMessage() for r in caplog.records if "migrated city 'alpha'" in r.getMessage()]
    assert len(notes) == 1 and str(legacy) in notes[0] and "alpha.duckdb" in notes[0]
    assert city_store.cities() == ["alpha"]  # beta moves when it is first asked for
    assert not list(city_store.root.glob("*.migrating"))
    assert _digest(legacy) == legacy_before  # the old file is only read
    caplog.clear()
    with caplog.at_level(logging.WARNING), city_store.connect("alpha") as con:  # no second copy
        assert con.execute(f"SELECT count(*) FROM {POIS_TABLE}").fetchone() == (300,)
    assert not [r for r in caplog.records if "migrated" in r.getMessage()]
    with city_store.connect("beta", read_only=True) as con:
        assert len(store.read_city_pois(con, "beta")) == 400
    with city_store.connect("gamma") as con:  # a city the old file never held starts empty
        assert not con.execute("SHOW TABLES").fetchall()


def test_a_city_key_that_is_not_a_file_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid city key"):
        for_home(tmp_path).path_for("../elsewhere")
