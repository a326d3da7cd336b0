"""The command line on a synthetic city: ingest, embed-texts, train (registers in MLflow),
evaluate the registered version; the results file's sections; and the console of
``python -m jobs.run_city`` as a user sees it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from calliper_pipeline.store import pois as store
from calliper_pipeline.store.city_store import for_home
from jobs.cli.parser import build_parser, main
from jobs.cli.results import write_section
from jobs.origin import LAUNCHED_BY, RUN_CITY_MODULE, USER_TAG
from tests.support.paths import REPO_ROOT
from tests.support.synthetic import make_synthetic_city


@pytest.fixture(scope="module")
def city_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("city")
    make_synthetic_city(root, n_pois=600, seed=3)
    return root


def _common(city_dir: Path, home: Path) -> list[str]:
    return [
        "--city", "synthetic", "--cities", str(city_dir / "synthetic.toml"),
        "--home", str(home), "--data-root", str(city_dir),
    ]  # fmt: skip


def test_help_names_units():
    text = build_parser().format_help()
    assert "ingest" in text and "run-all" in text and "retrieve" in text
    train_help = build_parser()._subparsers._group_actions[0].choices["train"].format_help()  # type: ignore[union-attr]
    assert "metres" in train_help and "--device" in train_help


@pytest.mark.slow  # ingest, embed, train, evaluate through the CLI: ~25 s on 2 cores
def test_cli_chain(city_dir: Path, tmp_path: Path, capsys):
    args = _common(city_dir, tmp_path)
    assert main(["ingest", *args]) == 0
    assert "600 valid" in capsys.readouterr().out
    assert main(["embed-texts", *args, "--text-encoder", "hashing"]) == 0
    first = capsys.readouterr().out
    assert main(["embed-texts", *args, "--text-encoder", "hashing"]) == 0
    second = capsys.readouterr().out
    assert " 0 embedded" in second and "0 already cached" not in second, (first, second)
    train = ["--text-encoder", "hashing", "--epochs", "2", "--batch-size", "128", "--threads", "1"]
    assert main(["train", *args, *train]) == 0
    assert "models:/calliper_synthetic/1 (alias candidate)" in capsys.readouterr().out
    model = "models:/calliper_synthetic@candidate"
    assert main(["evaluate", *args, "--model", model, "--seeds", "42"]) == 0
    table = capsys.readouterr().out
    assert "| luc |" in table and "| sdm |" in table and "| f1 |" in table, table
    with for_home(tmp_path).connect("synthetic", read_only=True) as con:
        assert len(store.read_city_pois(con, "synthetic")) == 600


def test_write_results_replaces_only_its_city(tmp_path: Path):
    path = tmp_path / "results.md"
    write_section(path, "a", "section A v1\n")
    write_section(path, "b", "section B\n")
    write_section(path, "a", "section A v2\n")
    text = path.read_text()
    assert "section A v2" in text and "section B" in text and "v1" not in text
    assert text.startswith("# Results")


@pytest.mark.slow
def test_run_city_console_is_the_pipelines_progress(tmp_path: Path) -> None:
    """A tiny ``python -m jobs.run_city`` in a fresh process and a fresh home (so every SQLite
    store is created and migrated): the console holds the pipeline's progress, not the
    migrations' alembic/SQLAlchemy lines or MLflow's INFO chatter; the run is tagged with its
    door. About a minute on 2 cores."""
    make_synthetic_city(tmp_path / "city", n_pois=300, evaluation=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLIPER_", "MLFLOW_"))}
    env |= {"CALLIPER_TEXT_ENCODER": "hashing", "PYTHONPATH": str(REPO_ROOT)}
    env.pop("DAGSTER_HOME", None)
    home = tmp_path / "home"
    argv = [sys.executable, "-m", "jobs.run_city", "--tiny", *_common(tmp_path / "city", home)]
    proc = subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0, console[-4000:]
    lines = console.splitlines()
    noise = [ln for ln in lines if any(w in ln.lower() for w in ("alembic", "sqlalchemy"))]
    assert noise == []
    assert [ln for ln in lines if " INFO mlflow" in ln] == []
    assert any("calliper_model - epoch 1/2" in ln for ln in lines), console[-4000:]
    assert any("materialised calliper_model[synthetic]" in ln for ln in lines)
    assert lines[-1].endswith("[calliper]: succeeded"), lines[-1]
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        (run,) = instance.get_runs()
    assert run.tags[LAUNCHED_BY] == run.tags[USER_TAG] == RUN_CITY_MODULE
