"""Pieces of the Dagster layer on their own: run config, promotion, the DuckDB lock wait, the
metadata helpers."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from assets.config import EvaluationConfig, PromotionConfig, TrainingConfig
from assets.maps import query_label
from assets.metadata import MAX_INLINE_MD, fmt, numbers, preview, rounded
from assets.resources import DuckDBResource
from calliper_pipeline import presets
from calliper_pipeline.config import RunConfig
from calliper_pipeline.errors import StoreLockedError
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
    path = tmp_path / "town.duckdb"  # the city "town"'s file in the store folder tmp_path
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
        impatient = DuckDBResource(root=str(tmp_path), lock_timeout_s=0.3)
        assert impatient.path_for("town") == path
        with pytest.raises(StoreLockedError), impatient.connect("town", read_only=True):
            pass
        with impatient.connect("other") as con:  # another city's file is not locked
            con.execute("CREATE TABLE u AS SELECT 2 AS y")
        start = time.monotonic()
        patient = DuckDBResource(root=str(tmp_path), lock_timeout_s=30)
        with patient.connect("town", read_only=True) as con:
            assert con.execute("SELECT x FROM t").fetchall() == [(1,)]
        assert time.monotonic() - start > 0.2
    finally:
        holder.wait(timeout=30)


def test_rounding_and_numbers() -> None:
    assert rounded(0.123456789) == 0.1235 and rounded(6439.123) == 6439.0
    assert rounded(1.23456e-5) == 1.235e-5 and rounded(float("inf")) == float("inf")
    values = numbers({"loss": 4.123456, "n": 3, "ok": True})
    assert values["loss"].value == 4.123 and values["n"].value == 3 and values["ok"].value is True
    assert fmt(0.34167, pct=True) == "34.2 %" and fmt(1234567) == "1,234,567"
    assert fmt(4.59171) == "4.592" and fmt(None) == "n/a"


def test_preview_stays_short_enough_to_render_in_place() -> None:
    md = preview(["**a**", "b"], ("map", "http://127.0.0.1:5000/get-artifact?path=maps%2Fa.png"))
    assert md.value == "**a**  \nb\n\n![map](http://127.0.0.1:5000/get-artifact?path=maps%2Fa.png)"
    assert preview(["a"], ("map", None)).value == "a"  # no MLflow UI known: no image
    long_url = "http://h/" + "x" * (MAX_INLINE_MD - 20)
    assert preview(["a"], ("map", long_url)).value == "a"  # the image goes, the figures stay
    with pytest.raises(ValueError, match="would not render in place"):
        preview(["y" * MAX_INLINE_MD])


def test_query_labels_are_short_keys() -> None:
    assert query_label("a place of pubs and bars, a type of eating and drinking") == "pubs_and_bars"
    assert query_label("A place of railway stations, a type of public transport") == (
        "railway_stations"
    )
    assert query_label("the quietest parks in the whole city") == "the_quietest_parks_i"
    assert query_label("!!!") == "query"
