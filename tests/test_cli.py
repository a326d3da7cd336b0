"""The command line on a synthetic city: ingest, embed-texts, train, evaluate, results file."""

from __future__ import annotations

from pathlib import Path

import pytest

from calliper_pipeline.store import pois as store
from jobs.cli.commands import write_results
from jobs.cli.parser import build_parser, main
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


def test_cli_chain(city_dir: Path, tmp_path: Path, capsys):
    args = _common(city_dir, tmp_path)
    assert main(["ingest", *args]) == 0
    assert "600 valid" in capsys.readouterr().out
    assert main(["embed-texts", *args, "--text-encoder", "hashing"]) == 0
    first = capsys.readouterr().out
    assert main(["embed-texts", *args, "--text-encoder", "hashing"]) == 0
    second = capsys.readouterr().out
    assert " 0 embedded" in second and "0 already cached" not in second, (first, second)
    model = tmp_path / "m.pt"
    train = ["--text-encoder", "hashing", "--epochs", "2", "--batch-size", "128", "--threads", "1"]
    assert main(["train", *args, *train, "--output", str(model)]) == 0
    assert model.exists()
    assert main(["evaluate", *args, "--model", str(model), "--seeds", "42"]) == 0
    table = capsys.readouterr().out
    assert "LUC MLP F1" in table and "paper: CaLLiPer-SenTrans" in table
    with store.connect(tmp_path / "warehouse.duckdb", read_only=True) as con:
        assert len(store.read_city_pois(con, "synthetic")) == 600


def test_write_results_replaces_only_its_city(tmp_path: Path):
    path = tmp_path / "results.md"
    write_results(path, "a", "section A v1\n")
    write_results(path, "b", "section B\n")
    write_results(path, "a", "section A v2\n")
    text = path.read_text()
    assert "section A v2" in text and "section B" in text and "v1" not in text
    assert text.startswith("# Results")
