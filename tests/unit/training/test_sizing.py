"""Training settings sized for small cities, never overriding what the operator set."""

from __future__ import annotations

from calliper_pipeline import presets
from calliper_pipeline.training.sizing import SMALL_CITY_PATIENCE, size_for_city


def test_a_3000_poi_city_gets_smaller_batches_and_early_stopping() -> None:
    paper = presets.run_config("paper").train  # batch 1024, 100 epochs, no early stopping
    sized, why = size_for_city(paper, 3_000)
    # 2,700 training points: 256 is the largest power of two giving >= 8 batches an epoch
    assert sized.batch_size == 256 and 2_700 // 256 >= 8 and 2_700 // 512 < 8
    assert sized.early_stopping_patience == SMALL_CITY_PATIENCE
    assert sized.epochs == 100  # an upper bound now
    assert "3,000 points" in why and "batch 256 (10 batches an epoch)" in why
    assert "chosen from the size: batch_size, early_stopping_patience" in why


def test_what_the_operator_set_is_kept() -> None:
    paper = presets.run_config("paper", {"batch_size": 1024, "epochs": 40}).train
    sized, why = size_for_city(paper, 3_000, explicit={"batch_size", "epochs"})
    assert sized.batch_size == 1024 and sized.epochs == 40
    assert "chosen from the size: early_stopping_patience" in why
    assert sized.early_stopping_patience == SMALL_CITY_PATIENCE
    off, _ = size_for_city(paper, 3_000, explicit={"batch_size", "early_stopping_patience"})
    assert off.early_stopping_patience is None and off.batch_size == 1024


def test_large_cities_and_tiny_ones() -> None:
    default = presets.run_config("default").train
    same, why = size_for_city(default, 380_000)
    assert same == default and "the preset's batch 1024, up to 30 epochs" in why
    tiny, _ = size_for_city(default, 300)  # never below 64 points a batch
    assert tiny.batch_size == 64 and tiny.early_stopping_patience == 5  # the preset's own
