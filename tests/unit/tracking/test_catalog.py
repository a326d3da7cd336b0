"""``calliper models`` and the store checks: what a store holds, the URIs to paste, and no
empty store created by a command that only reads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import mlflow
import pytest

from calliper_pipeline.errors import ConfigError
from calliper_pipeline.tracking import catalog
from calliper_pipeline.tracking.runs import (
    TrackingConfig,
    absolute_tracking_uri,
    require_existing_store,
)
from jobs.cli.parser import main
from tests.support.models import register_champion

CITY = "catville"
METRICS = {"luc.mlp.f1": 0.61, "sdm.mlp.l1": 0.123, "blocks.luc.mlp.f1": 0.44}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    register_champion(home, CITY, seed=1, metrics=METRICS)
    return home


def test_absolute_tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert absolute_tracking_uri("sqlite:///.calliper/mlflow/mlflow.db") == (
        f"sqlite:///{tmp_path.resolve()}/.calliper/mlflow/mlflow.db"
    )
    assert absolute_tracking_uri("sqlite:////abs/mlflow.db") == "sqlite:////abs/mlflow.db"
    assert absolute_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_missing_store_is_refused_and_not_created(tmp_path: Path) -> None:
    db = tmp_path / "none" / "mlflow.db"
    with pytest.raises(ConfigError, match=f"no MLflow store at {db}"):
        require_existing_store(TrackingConfig(tracking_uri=f"sqlite:///{db}"))
    assert not (tmp_path / "none").exists()
    require_existing_store(TrackingConfig(tracking_uri="http://127.0.0.1:1"))  # not local: ok


def test_list_models(home: Path) -> None:
    tracking = TrackingConfig(tracking_uri=f"sqlite:///{home}/mlflow/mlflow.db")
    (entry,) = catalog.list_models(tracking)
    assert entry.name == f"calliper_{CITY}"
    assert entry.versions == ["1"]
    assert entry.tracking_uri == f"sqlite:///{home}/mlflow/mlflow.db"
    assert entry.champion_uri == f"models:/calliper_{CITY}@champion"
    aliases = {a.alias: a for a in entry.aliases}
    assert set(aliases) == {"candidate", "champion"}
    assert aliases["champion"].version_uri == f"models:/calliper_{CITY}/1"
    assert aliases["champion"].metrics == {
        "luc_f1": 0.61,
        "sdm_l1": 0.123,
        "luc_f1_blocks": 0.44,
    }
    assert catalog.list_models(tracking, city="elsewhere") == []


def test_registry_description_holds_the_absolute_uri(home: Path) -> None:
    client = TrackingConfig(tracking_uri=f"sqlite:///{home}/mlflow/mlflow.db").client()
    name = f"calliper_{CITY}"
    uri = f"sqlite:///{home}/mlflow/mlflow.db"
    described = client.get_model_version(name, "1").description
    assert f'mlflow.set_tracking_uri("{uri}")' in described
    assert f'load_model("models:/{name}/1")' in described
    assert f'load_model("models:/{name}@champion")' in client.get_registered_model(name).description


def test_cli_models_from_another_directory(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("CALLIPER_HOME", str(home))
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    uri = f"sqlite:///{home}/mlflow/mlflow.db"
    assert f"tracking URI: {uri}" in text
    assert "@champion  -> v1" in text and "luc_f1=0.61 sdm_l1=0.123" in text
    assert f'mlflow.set_tracking_uri("{uri}")' in text

    assert main(["models", "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["champion_uri"] == f"models:/calliper_{CITY}@champion"
    assert entry["tracking_uri"] == uri

    # the recipe it prints works verbatim from this (unrelated) directory
    before = mlflow.get_tracking_uri()
    try:
        mlflow.set_tracking_uri(entry["tracking_uri"])
        info = mlflow.models.get_model_info(entry["champion_uri"])
    finally:
        mlflow.set_tracking_uri(before)
    assert info.signature.inputs.input_names() == ["lon", "lat"]
    assert not any(tmp_path.iterdir()), list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "argv",
    [
        ["models"],
        ["evaluate", "--model", "models:/calliper_london@champion"],
        ["embed", "--model", "models:/calliper_london@champion", "--input", "x.csv",
         "--output", "y.parquet"],
        ["retrieve", "pubs", "--model", "models:/calliper_london@champion", "--output", "h.png"],
        ["serve", "--port", "5999"],
    ],
)  # fmt: skip
def test_read_only_commands_refuse_a_missing_store(
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("CALLIPER_DEBUG", raising=False)
    home = tmp_path / "home"
    assert main([*argv, "--home", str(home)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"calliper {argv[0]}: error: no MLflow store at {home}/mlflow/mlflow.db "
        f"(sqlite:///{home}/mlflow/mlflow.db): train a model first (make run / calliper "
        "train) or point --home, CALLIPER_HOME or --tracking-uri at an existing store"
    ]
    assert os.listdir(tmp_path) == []  # no store, no folder created


def test_serve_refuses_a_city_without_a_champion(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("CALLIPER_DEBUG", raising=False)
    assert main(["serve", "--city", "london", "--home", str(home)]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.startswith(
        f"calliper serve: error: models:/calliper_london@champion not found in "
        f"sqlite:///{home}/mlflow/mlflow.db (calliper models lists what is there): "
    ), err
