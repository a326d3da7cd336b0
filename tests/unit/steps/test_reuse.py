"""A second training of the same snapshot, settings, text encoder and commit reuses the
registered version (and says so); any change of those trains a new one."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from calliper_pipeline import presets
from calliper_pipeline.config import EncoderConfig
from calliper_pipeline.steps import reuse
from calliper_pipeline.steps.embed import embed
from calliper_pipeline.steps.ingest import ingest_profiled
from calliper_pipeline.steps.train import find_reusable, train_and_register
from calliper_pipeline.store.db import connect
from calliper_pipeline.text.encoders import build_text_encoder
from calliper_pipeline.tracking.runs import default_tracking
from calliper_pipeline.training.inputs import count_training_points, training_inputs
from tests.support.synthetic import make_synthetic_city

CODE = "0.1.0+g0123456789ab"


def test_same_inputs_reuse_the_registered_version(tmp_path: Path):
    city = make_synthetic_city(tmp_path / "city", n_pois=300, seed=2, evaluation=False)
    encoder = build_text_encoder("hashing")
    cfg = presets.run_config(presets.PAPER, {"epochs": 1, "batch_size": 64, "num_threads": 1})
    cfg = replace(cfg, encoder=EncoderConfig(frequency_num=4, hidden_dim=16, num_layers=1))
    with connect(tmp_path / "warehouse.duckdb") as con:
        ingest_profiled(con, city, tmp_path / "city")
        embed(con, city, encoder)
        inputs = training_inputs(con, city, tmp_path / "city", encoder.encoder_id, cfg)
    tracking = default_tracking(tmp_path / "mlflow")
    lines: list[str] = []

    def train(run_cfg, code=CODE, n=0):
        return train_and_register(
            inputs, city, tmp_path / "city", run_cfg, tracking, tmp_path / f"out{n}",
            dagster_run_id=None, code_version=code, log=lines.append, reuse=True,
        )  # fmt: skip

    first = train(cfg)
    assert not first.reused and first.version.version == "1"
    second = train(replace(cfg, train=replace(cfg.train, num_threads=2)), n=1)  # runtime only
    assert second.reused and second.version == first.version
    assert second.history == first.history and second.best_val_loss == first.best_val_loss
    assert second.curve_png.is_file() and second.curve_png.parent.is_relative_to(tmp_path / "out1")
    assert any(line.startswith("reusing models:/calliper_synthetic/1") for line in lines)
    # a changed setting, or code with uncommitted changes, trains a new version
    third = train(replace(cfg, train=replace(cfg.train, lr=0.002)), n=2)
    assert not third.reused and third.version.version == "2"
    fourth = train(cfg, code=CODE + ".dirty", n=3)
    assert not fourth.reused and fourth.version.version == "3"


def test_the_reusable_version_is_found_before_the_inputs_are_built(tmp_path: Path):
    """``find_reusable`` (what the asset asks first) keys on the POI count, background points
    and sizing exactly as training does, reading only the store."""
    city = make_synthetic_city(tmp_path / "city", n_pois=300, seed=2, evaluation=False)
    encoder = build_text_encoder("hashing")
    cfg = presets.run_config(
        presets.DEFAULT,
        {"epochs": 1, "num_threads": 1, "target_radii_m": (300.0,), "background_fraction": 0.5},
    )
    cfg = replace(cfg, encoder=EncoderConfig(frequency_num=4, hidden_dim=16, num_layers=1))
    tracking = default_tracking(tmp_path / "mlflow")
    with connect(tmp_path / "warehouse.duckdb") as con:
        ingest_profiled(con, city, tmp_path / "city")
        embed(con, city, encoder)
        inputs = training_inputs(con, city, tmp_path / "city", encoder.encoder_id, cfg)
        counted = count_training_points(con, city, cfg.objective)
        assert counted is not None and counted[0] == len(inputs.coords) == 300 + 150

        def lookup(run_cfg, explicit=frozenset()):
            return find_reusable(
                con, city, run_cfg, encoder.encoder_id, tracking, tmp_path / "found",
                code_version=CODE, explicit=explicit,
            )  # fmt: skip

        assert lookup(cfg) is None  # nothing registered yet
        # a small city: batch and patience are sized from the 450 points (not set explicitly)
        first = train_and_register(
            inputs, city, tmp_path / "city", cfg, tracking, tmp_path / "out",
            dagster_run_id=None, code_version=CODE, explicit=set(),
        )  # fmt: skip
        assert first.run_cfg is not None and first.run_cfg.train.batch_size < 1024
        found = lookup(cfg)
        assert found is not None and found.reused and found.version == first.version
        assert found.run_cfg == first.run_cfg and found.sizing == first.sizing
        # an explicit batch size is another key; so is another background share
        assert lookup(cfg, explicit={"batch_size"}) is None
        fewer = replace(cfg.objective, background_fraction=0.25)
        assert lookup(replace(cfg, objective=fewer)) is None


@pytest.mark.parametrize("code", ["0.1.0+g0123456789ab.dirty", "0.1.0", "0+unknown"])
def test_no_key_without_a_clean_commit(code: str):
    assert reuse.training_key(presets.run_config(), "abc", "enc", code) is None


def test_key_changes_with_each_input():
    cfg = presets.run_config()
    base = reuse.training_key(cfg, "snap", "enc", CODE)
    assert base is not None and len(base) == 16
    assert reuse.training_key(cfg, "snap2", "enc", CODE) != base
    assert reuse.training_key(cfg, "snap", "enc2", CODE) != base
    assert reuse.training_key(cfg, "snap", "enc", "0.1.0+gffffffffffff") != base
    longer = replace(cfg, train=replace(cfg.train, epochs=cfg.train.epochs + 1))
    assert reuse.training_key(longer, "snap", "enc", CODE) != base
    elsewhere = replace(cfg, train=replace(cfg.train, device="cuda", num_threads=1))
    assert reuse.training_key(elsewhere, "snap", "enc", CODE) == base
