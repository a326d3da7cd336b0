"""Pieces of the Dagster layer on their own: run config, promotion, the DuckDB lock wait."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest

from assets.config import EvaluationConfig, PromotionConfig, TrainingConfig
from assets.resources import DuckDBResource
from calliper_pipeline import presets
from calliper_pipeline.config import RunConfig
from jobs.run_city import build_run_config


def test_training_config_defaults_are_the_librarys() -> None:
    assert TrainingConfig(preset="paper").run_config() == RunConfig()
    assert TrainingConfig().run_config() == presets.run_config("default")
    cfg = TrainingConfig(epochs=3, pe="theory", description_variant="calliper_plus", bf16=True)
    run = cfg.run_config()
    assert (run.train.epochs, run.encoder.pe, run.description.variant) == (
        3,
        "theory",
        "calliper_plus",
    )
    default = presets.run_config("default")
    assert run.train.bf16 and run.train.lr == default.train.lr
    assert run.objective == default.objective  # overrides change only what they name
    paper = TrainingConfig(preset="paper", epochs=7, seed=3).run_config()
    assert paper == replace(RunConfig(), train=replace(RunConfig().train, epochs=7, seed=3))
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
