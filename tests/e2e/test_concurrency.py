"""Two cities at once through two processes on one CALLIPER_HOME: each ingests, embeds its
texts and trains (registering in the shared MLflow store); both finish, neither fails on the
other's DuckDB lock (each city has its own file, so neither waits for a lock at all), and each
city's file holds exactly its own POIs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from calliper_pipeline.store import pois as store
from calliper_pipeline.store.city_store import for_home
from calliper_pipeline.store.db import WAITING
from tests.support.paths import REPO_ROOT
from tests.support.synthetic import make_synthetic_city

pytestmark = pytest.mark.slow

_STEPS = (
    ["ingest"],
    ["embed-texts", "--text-encoder", "hashing"],
    ["train", "--text-encoder", "hashing", "--epochs", "2", "--batch-size", "128",
     "--threads", "1"],
)  # fmt: skip


def _chain(key: str, root: Path, home: Path) -> str:
    common = ["--city", key, "--cities", str(root / f"{key}.toml"), "--home", str(home),
              "--data-root", str(root)]  # fmt: skip
    cli = f"{sys.executable} -m jobs.cli.parser"
    return " && ".join(
        f"{cli} {step[0]} {' '.join(common)} {' '.join(step[1:])}" for step in _STEPS
    )


def test_two_cities_in_two_processes(tmp_path: Path):
    home = tmp_path / "home"
    counts = {"alpha": 500, "beta": 700}
    procs = {}
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "CALLIPER_LOCK_TIMEOUT_S": "120"}
    for i, (key, n) in enumerate(counts.items()):
        root = tmp_path / key
        make_synthetic_city(root, n_pois=n, seed=i, key=key, evaluation=False)
        procs[key] = subprocess.Popen(
            ["bash", "-c", _chain(key, root, home)], cwd=REPO_ROOT, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
    outputs = {key: p.communicate(timeout=300)[0] for key, p in procs.items()}
    for key, p in procs.items():
        assert p.returncode == 0, outputs[key]
        assert "IOException" not in outputs[key] and "Traceback" not in outputs[key]
        assert WAITING not in outputs[key], outputs[key]  # never waited for a lock
        assert f"models:/calliper_{key}/1 (alias candidate)" in outputs[key], outputs[key]
    city_store = for_home(home)
    assert city_store.cities() == sorted(counts)
    for key, n in counts.items():
        with city_store.connect(key, read_only=True) as con:
            assert len(store.read_city_pois(con, key)) == n
            other = next(k for k in counts if k != key)
            assert store.read_city_pois(con, other).empty
