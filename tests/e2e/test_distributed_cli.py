"""``calliper train --nproc 2``: torchrun starts two gloo workers that train one model
together; rank 0 registers it, and the registered model embeds points."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT
from tests.support.synthetic import make_synthetic_city

pytestmark = pytest.mark.slow


def test_train_on_two_processes(tmp_path: Path):
    root = tmp_path / "city"
    make_synthetic_city(root, n_pois=600, seed=5, evaluation=False)
    common = ["--city", "synthetic", "--cities", str(root / "synthetic.toml"),
              "--home", str(tmp_path / "home"), "--data-root", str(root)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}

    def cli(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "jobs.cli.parser", *args, *common], cwd=REPO_ROOT, env=env,
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout + proc.stderr

    cli("ingest")
    cli("embed-texts", "--text-encoder", "hashing")
    out = cli("train", "--nproc", "2", "--text-encoder", "hashing", "--epochs", "2",
              "--batch-size", "128", "--threads", "1")  # fmt: skip
    assert "models:/calliper_synthetic/1 (alias candidate) [2 processes]" in out, out
    assert out.count("(alias candidate)") == 1  # only rank 0 registers
    points = tmp_path / "points.csv"
    points.write_text("lon,lat\n10.0,50.0\n10.01,50.02\n")
    cli("embed", "--model", "models:/calliper_synthetic/1", "--input", str(points),
        "--output", str(tmp_path / "emb.parquet"))  # fmt: skip
    assert (tmp_path / "emb.parquet").stat().st_size > 0
