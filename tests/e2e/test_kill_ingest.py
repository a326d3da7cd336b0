"""SIGKILL a real ``calliper ingest`` at several moments: whatever it had written is either the
whole previous state or nothing (one transaction), and a re-run stores exactly what an
uninterrupted ingest stores."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from calliper_pipeline.store import pois as store
from calliper_pipeline.store.city_store import for_home
from calliper_pipeline.store.db import connect, table_exists
from jobs.cli.parser import main
from tests.support.paths import REPO_ROOT
from tests.support.synthetic import make_synthetic_city

pytestmark = pytest.mark.slow

N_POIS = 60_000


def _snapshot(home: Path) -> tuple[int, list[str]]:
    """(POIs stored, their ids sorted) of the city in ``home``'s store (0, [] if none)."""
    path = for_home(home).path_for("synthetic")
    if not path.exists():
        return 0, []
    with connect(path, read_only=True) as con:
        if not table_exists(con, "pois"):
            return 0, []
        pois = store.read_city_pois(con, "synthetic")
    return len(pois), sorted(pois["poi_id"].astype(str))


def test_killed_ingest_leaves_nothing_half_written(tmp_path: Path):
    root = tmp_path / "city"
    make_synthetic_city(root, n_pois=N_POIS, seed=9, evaluation=False)

    def args(home: Path) -> list[str]:
        return ["ingest", "--city", "synthetic", "--cities", str(root / "synthetic.toml"),
                "--home", str(home), "--data-root", str(root)]  # fmt: skip

    assert main(args(tmp_path / "reference")) == 0
    expected = _snapshot(tmp_path / "reference")
    assert expected[0] == N_POIS

    home = tmp_path / "home"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    outcomes = []
    for delay_s in (1.0, 1.6, 2.2, 2.8, 3.4, 4.0):  # import, read, validate, write (roughly)
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobs.cli.parser", *args(home)], cwd=REPO_ROOT, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(delay_s)
        finished = proc.poll() is not None
        if not finished:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        state = _snapshot(home)
        outcomes.append((delay_s, finished, state[0]))
        # all or nothing: the store holds no POIs or exactly the complete snapshot
        assert state == (0, []) or state == expected, outcomes
    print("kill outcomes (delay s, finished before the kill, POIs stored):", outcomes)
    assert any(not finished for _, finished, _ in outcomes)  # at least one kill landed
    assert main(args(home)) == 0
    assert _snapshot(home) == expected, outcomes
