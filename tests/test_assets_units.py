"""Pieces of the Dagster layer on their own: run config, the DuckDB lock wait, drift, results."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from assets.config import EvaluationConfig, PromotionConfig, TrainingConfig
from assets.resources import DuckDBResource
from calliper_pipeline.config import RunConfig
from calliper_pipeline.ingest.quality import total_variation
from calliper_pipeline.store import metrics as results
from jobs.run_city import build_run_config


def test_training_config_defaults_are_the_librarys() -> None:
    assert TrainingConfig().run_config() == RunConfig()
    cfg = TrainingConfig(epochs=3, pe="theory", description_variant="calliper_plus", bf16=True)
    run = cfg.run_config()
    assert (run.train.epochs, run.encoder.pe, run.description.variant) == (
        3,
        "theory",
        "calliper_plus",
    )
    assert run.train.bf16 and run.train.lr == RunConfig().train.lr
    probe = EvaluationConfig(seeds=[1, 2], max_epochs=7).probe_config()
    assert (probe.seeds, probe.max_epochs) == ((1, 2), 7)


def test_run_config_keeps_the_description_variant_in_step() -> None:
    config = build_run_config(TrainingConfig(description_variant="calliper_plus"))
    ops = config["ops"]
    assert ops["text_embeddings"]["config"]["description_variant"] == "calliper_plus"
    assert ops["calliper_model"]["config"]["description_variant"] == "calliper_plus"


def test_promotion_direction_follows_the_task() -> None:
    assert PromotionConfig().direction() is True  # luc.mlp.f1: higher is better
    assert PromotionConfig(metric="sdm.mlp.kl").direction() is False
    assert PromotionConfig(metric="sdm.mlp.kl", higher_is_better=True).direction() is True


def test_duckdb_resource_waits_for_another_process_lock(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
            "c.execute('CREATE TABLE t AS SELECT 1 AS x'); print('held', flush=True); "
            "time.sleep(2.0); c.close()",
            str(path),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        impatient = DuckDBResource(path=str(path), lock_timeout_s=0.3)
        with pytest.raises(duckdb.IOException), impatient.connect(read_only=True):
            pass
        start = time.monotonic()
        with DuckDBResource(path=str(path), lock_timeout_s=30).connect(read_only=True) as con:
            assert con.execute("SELECT x FROM t").fetchall() == [(1,)]
        assert time.monotonic() - start > 0.2
    finally:
        holder.wait(timeout=30)


def test_total_variation_distance() -> None:
    p = pd.Series({"a": 0.5, "b": 0.5})
    assert total_variation(p, p) == 0.0
    assert total_variation(p, pd.Series({"c": 1.0})) == pytest.approx(1.0)
    assert total_variation(p, pd.Series({"a": 0.6, "b": 0.3, "c": 0.1})) == pytest.approx(0.2)


def test_evaluation_rows_are_replaced_per_version_and_task(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "encoder": ["e", "e"],
            "task": ["luc", "luc"],
            "probe": ["mlp", "linear"],
            "metric": ["f1", "f1"],
            "mean": [0.5, 0.4],
            "std": [0.01, 0.02],
            "n_seeds": [5, 5],
        }
    )
    con = duckdb.connect(str(tmp_path / "e.duckdb"))
    for _ in range(2):  # idempotent
        assert results.write_evaluation(con, "x", "calliper_x", "1", "run", frame) == 2
    results.write_evaluation(con, "x", "calliper_x", "2", "run2", frame.assign(mean=[0.7, 0.6]))
    assert len(results.read_evaluation(con, "x")) == 4
    assert results.score(con, "x", "calliper_x", "1", "luc.mlp.f1") == 0.5
    assert results.score(con, "x", "calliper_x", "2", "luc.mlp.f1") == 0.7
    assert results.score(con, "x", "calliper_x", "2", "sdm.mlp.kl") is None
    with pytest.raises(ValueError):
        results.split_metric_key("luc.f1")
