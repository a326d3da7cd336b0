"""The grid runner on a synthetic city (stored, resumable), the experiment table's atomic cell
writes, and the MLflow records of a grid (one parent, one child per cell, idempotent)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from calliper_pipeline import presets
from calliper_pipeline.experiments import runner
from calliper_pipeline.experiments.grid import Variant
from calliper_pipeline.steps.ingest import ingest
from calliper_pipeline.store import experiments as results_store
from calliper_pipeline.store.db import connect
from calliper_pipeline.text.encoders import build_text_encoder
from calliper_pipeline.tracking.experiments import EXPERIMENT_NAME, log_grid
from calliper_pipeline.tracking.runs import default_tracking
from tests.support.synthetic import make_synthetic_city

KEY = "synthetic"
TINY = {
    "epochs": 1,
    "hidden_dim": 16,
    "num_layers": 1,
    "frequency_num": 4,
    "batch_size": 64,
    "objective.target_radii_m": [200.0, 500.0],
    "probe.seeds": [42],
    "probe.max_epochs": 5,
}
VARIANTS = (
    Variant("paper", presets.PAPER, {}, "own text"),
    Variant("heads", presets.DEFAULT, {"objective.background_fraction": 0.0}, "2 heads"),
)
COUNTS = runner.BASELINE_PREFIX + "POI counts 200-2000 m (all sources)"


@dataclass
class Grid:
    con: duckdb.DuckDBPyConnection
    spec: runner.GridSpec
    rows: pd.DataFrame
    log: list[str]


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grid]:
    root = tmp_path_factory.mktemp("grid")
    city = make_synthetic_city(root / "city", n_pois=300, seed=2, n_landuse=200, lsoa_grid_side=10)
    con = connect(root / "warehouse.duckdb")
    try:
        ingest(con, city, root / "data")
        spec = runner.GridSpec(
            experiment="smoke", city=city, data_root=root / "data",
            encoder=build_text_encoder("hashing"), seeds=(0,), cache_dir=root / "targets",
            overrides=TINY,
        )  # fmt: skip
        log: list[str] = []
        rows = runner.run_grid(con, spec, VARIANTS, with_baselines=True, log=log.append)
        yield Grid(con, spec, rows, log)
    finally:
        con.close()


def test_grid_stores_every_cell_and_the_baselines(grid: Grid) -> None:
    rows = grid.rows
    cells = set(zip(rows["config"], rows["train_seed"], strict=True))
    baselines = {
        COUNTS,
        runner.baselines.POSITIONAL_ENCODING,
        runner.baselines.UNTRAINED_ENCODER,
        runner.baselines.RAW_COORDINATES,
    }
    assert cells == {("paper", 0), ("heads", 0)} | {(b, 0) for b in baselines}
    assert set(rows["protocol"]) == {"random", "blocks"}
    dims = rows.groupby("config")["dim"].first()
    assert dims["paper"] == 128 and dims["heads"] == 256  # one 128-d head per radius
    assert (rows["n_seeds"] == 1).all() and rows["mean"].notna().all()
    info = json.loads(rows.loc[rows["config"] == "heads", "info_json"].iloc[0])
    assert info["epochs_run"] == 1
    assert info["config"]["objective.target_radii_m"] == "(200.0, 500.0)"
    assert info["config"]["encoder.hidden_dim"] == "16" and info["config"]["train.seed"] == "0"
    assert any("(2/2) heads seed 0: training" in line for line in grid.log)


def test_a_second_run_trains_and_evaluates_nothing(
    grid: Grid, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Any] = []

    def no_cell(*args: Any, **kwargs: Any) -> None:
        calls.append(args)
        raise AssertionError("a stored cell was trained again")

    def no_eval(*args: Any, **kwargs: Any) -> None:
        calls.append(args)
        raise AssertionError("a stored baseline was evaluated again")

    monkeypatch.setattr(runner, "run_cell", no_cell)
    monkeypatch.setattr(runner, "_evaluate", no_eval)
    log: list[str] = []
    again = runner.run_grid(grid.con, grid.spec, VARIANTS, with_baselines=True, log=log.append)
    assert calls == []
    assert "(1/2) paper seed 0: stored" in log and "(2/2) heads seed 0: stored" in log
    cols = ["config", "protocol", "task", "probe", "metric", "mean", "recorded_at"]
    key = ["config", "protocol", "task", "probe", "metric"]
    pd.testing.assert_frame_equal(
        again[cols].sort_values(key).reset_index(drop=True),
        grid.rows[cols].sort_values(key).reset_index(drop=True),
    )


def test_counts_baselines_follow_the_sources_the_variants_train_on() -> None:
    names = runner.baseline_names(VARIANTS, 0)
    assert names == {COUNTS: None}
    subset = {**VARIANTS[0].overrides, "objective.sources": ["a"]}
    mixed = (*VARIANTS, Variant("only a", presets.PAPER, subset))
    assert runner.baseline_names(mixed, 0) == {
        COUNTS: None, runner.BASELINE_PREFIX + "POI counts 200-2000 m (a)": ("a",),
    }  # fmt: skip
    # the grid's overrides apply to every variant, the baselines' selection included
    only_b = runner.baseline_names(VARIANTS, 0, {"objective.sources": ["b", "c"]})
    assert only_b == {runner.BASELINE_PREFIX + "POI counts 200-2000 m (b+c)": ("b", "c")}


def _cell(mean: float, protocol: Any = "random") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "protocol": [protocol, "blocks"],
            "task": "luc",
            "probe": "mlp",
            "metric": "f1",
            "mean": [mean, mean / 2],
            "std": 0.01,
            "n_seeds": 5,
        }
    )


def test_write_cell_replaces_a_cell_and_a_failed_write_keeps_the_old_rows(tmp_path: Path) -> None:
    with connect(tmp_path / "w.duckdb") as con:
        assert not results_store.done(con, "e", "c", "a", 0)
        assert results_store.write_cell(con, "e", "c", "a", 0, _cell(0.3), 128, 1.0, {}) == 2
        results_store.write_cell(con, "e", "c", "b", 0, _cell(0.9), 128, 1.0, {})
        results_store.write_cell(con, "e", "c", "a", 0, _cell(0.4), 256, 2.0, {"k": 1})
        assert results_store.done(con, "e", "c", "a", 0)
        assert not results_store.done(con, "e", "c", "a", 1)
        rows = results_store.read(con, "e", "c")
        a = rows[rows["config"] == "a"]
        assert sorted(a["mean"]) == [0.2, 0.4] and set(a["dim"]) == {256}
        assert set(a["info_json"]) == {'{"k": 1}'}
        assert sorted(rows.loc[rows["config"] == "b", "mean"]) == [0.45, 0.9]  # untouched
        with pytest.raises(duckdb.ConstraintException):  # NULL protocol: the INSERT fails
            results_store.write_cell(con, "e", "c", "a", 0, _cell(0.7, None), 64, 3.0, {})
        after = results_store.read(con, "e", "c")
        assert sorted(after.loc[after["config"] == "a", "mean"]) == [0.2, 0.4]  # rolled back
        assert len(after) == 4
        assert results_store.read(con, "other", "c").empty


def test_log_grid_one_parent_and_one_child_per_cell_idempotent(tmp_path: Path) -> None:
    with connect(tmp_path / "w.duckdb") as con:
        info = {"config": {"train.epochs": "1", "objective.name": "poi"}}
        for config, seed in (("a", 0), ("a", 1), ("b", 0)):
            results_store.write_cell(con, "g", KEY, config, seed, _cell(0.5), 128, 3.0, info)
        rows = results_store.read(con, "g", KEY)
    tracking = default_tracking(tmp_path / "mlflow")
    assert log_grid(tracking, "g", KEY, rows) == 3
    assert log_grid(tracking, "g", KEY, rows) == 0
    client = tracking.client()
    exp = client.get_experiment_by_name(EXPERIMENT_NAME)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("role") == "parent"]
    children = [r for r in runs if r.data.tags.get("role") == "cell"]
    assert len(parents) == 1 and len(children) == 3
    parent_id = parents[0].info.run_id
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent_id}
    assert {(r.data.tags["config"], r.data.tags["train_seed"]) for r in children} == {
        ("a", "0"), ("a", "1"), ("b", "0"),
    }  # fmt: skip
    child = children[0]
    assert child.data.params == {"train.epochs": "1", "objective.name": "poi"}
    assert child.data.metrics["random.luc.mlp.f1"] == pytest.approx(0.5)
    assert child.data.metrics["blocks.luc.mlp.f1"] == pytest.approx(0.25)
    assert child.data.metrics["dim"] == 128.0 and child.data.metrics["seconds"] == 3.0
    # one more cell later: only it is logged, under the same parent
    with connect(tmp_path / "w.duckdb") as con:
        results_store.write_cell(con, "g", KEY, "c", 0, _cell(0.6), 128, 1.0, {})
        rows = results_store.read(con, "g", KEY)
    assert log_grid(tracking, "g", KEY, rows) == 1
    assert len(client.search_runs([exp.experiment_id])) == 5
