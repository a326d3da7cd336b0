"""SIGKILL a real ``calliper train`` after its second epoch: a plain re-run refuses to overwrite
the unfinished checkpoint, ``--resume`` finishes it, and the result equals an uninterrupted run
(the same best validation loss), with exactly one registered version and no half-written file
left in the checkpoint folder."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.cli.parser import main
from tests.support.paths import REPO_ROOT
from tests.support.synthetic import make_synthetic_city

pytestmark = pytest.mark.slow

TRAIN = ["train", "--text-encoder", "hashing", "--epochs", "4", "--batch-size", "64",
         "--threads", "1", "--preset", "paper", "--early-stopping", "10"]  # fmt: skip


def _common(root: Path, home: Path) -> list[str]:
    return ["--city", "synthetic", "--cities", str(root / "synthetic.toml"), "--home", str(home),
            "--data-root", str(root)]  # fmt: skip


def _prepared(root: Path, home: Path) -> list[str]:
    common = _common(root, home)
    assert main(["ingest", *common]) == 0
    assert main(["embed-texts", *common, "--text-encoder", "hashing"]) == 0
    return common


def _val_loss(text: str) -> str:
    found = re.search(r"best epoch (\d+), val loss ([0-9.]+)", text)
    assert found, text
    return f"{found.group(1)}:{found.group(2)}"


def _cli(args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "jobs.cli.parser", *args], cwd=REPO_ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip


def test_killed_training_resumes_to_the_uninterrupted_result(tmp_path: Path, capsys):
    root = tmp_path / "city"
    make_synthetic_city(root, n_pois=600, seed=8, evaluation=False)
    reference = _prepared(root, tmp_path / "a")
    assert main([*TRAIN, *reference]) == 0
    expected = _val_loss(capsys.readouterr().out)

    common = _prepared(root, tmp_path / "b")
    proc = _cli([*TRAIN, *common])
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "epoch 2/4" in line:  # last.pt of epoch 2 is written before this line
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)

    again = _cli([*TRAIN, *common])
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 2 and "unfinished run (epoch 2 of 4)" in out, out
    assert "Traceback" not in out

    resumed = _cli([*TRAIN, *common, "--resume"])
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert (
        "models:/calliper_synthetic/1 (alias candidate)" in out
    )  # the killed run registered nothing
    assert _val_loss(out) == expected
    leftovers = [p.name for p in (tmp_path / "b").rglob("*.tmp")]
    assert leftovers == []


def test_killed_registration_leaves_a_complete_candidate(tmp_path: Path, capsys):
    """SIGKILL ``calliper train`` once it logs and registers the model: ``--resume`` takes the
    finished checkpoint (no epoch is trained again) and registers it; the version holding
    ``candidate`` comes from a FINISHED run and embeds exactly like an uninterrupted run's."""
    import numpy as np
    import pandas as pd

    from calliper_pipeline.tracking.runs import default_tracking
    from calliper_pipeline.tracking.serving import load_pyfunc

    root = tmp_path / "city"
    make_synthetic_city(root, n_pois=600, seed=8, evaluation=False)
    reference = _prepared(root, tmp_path / "a")
    assert main([*TRAIN, *reference]) == 0
    capsys.readouterr()
    common = _prepared(root, tmp_path / "b")
    proc = _cli([*TRAIN, *common])
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "logging and registering the model" in line:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    resumed = _cli([*TRAIN, *common, "--resume"])
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert "epoch 1/4" not in out  # nothing trained again

    points = pd.DataFrame({"lon": [10.0, 10.02, 9.97], "lat": [50.0, 50.01, 49.99]})
    embedded = []
    for home in (tmp_path / "a", tmp_path / "b"):
        tracking = default_tracking(home / "mlflow")
        client = tracking.client()
        version = client.get_model_version_by_alias("calliper_synthetic", "candidate")
        assert client.get_run(str(version.run_id)).info.status == "FINISHED"
        model = load_pyfunc(tracking, "models:/calliper_synthetic@candidate")
        embedded.append(np.asarray(model.predict(points)))
    np.testing.assert_array_equal(embedded[0], embedded[1])
