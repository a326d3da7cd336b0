"""What a training run does with an existing checkpoint: refuse to overwrite an unfinished one,
resume it exactly, refuse one of other settings or data naming the difference, restart on
request, and (Dagster's ``auto``) continue a run interrupted part-way."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from calliper_pipeline.config import TrainConfig
from calliper_pipeline.errors import ConfigError
from calliper_pipeline.training.checkpoints import (
    LAST_CHECKPOINT,
    CheckpointError,
    differences,
    read_info,
)
from calliper_pipeline.training.loop import train
from tests.unit.training.test_train import _toy

CFG = TrainConfig(epochs=4, batch_size=64, seed=3, num_threads=1)


class _Killed(Exception):
    pass


def _interrupted(tmp_path: Path, after_epoch: int = 2) -> None:
    """Train CFG with checkpoints and die right after epoch ``after_epoch`` was saved."""
    spec, _, coords, label, table = _toy(400)

    def die(stats):
        if stats.epoch == after_epoch:
            raise _Killed

    with pytest.raises(_Killed):
        train(spec, coords, label, table, CFG, on_epoch_end=die, checkpoint_dir=tmp_path)


def test_epochs_must_be_positive():
    spec, _, coords, label, table = _toy(100)
    with pytest.raises(ConfigError, match="epochs must be at least 1, got 0"):
        train(spec, coords, label, table, replace(CFG, epochs=0))


def test_unfinished_checkpoint_is_never_silently_overwritten(tmp_path: Path):
    _interrupted(tmp_path)
    info = read_info(tmp_path / LAST_CHECKPOINT)
    assert info is not None and (info.epoch, info.epochs, info.finished) == (2, 4, False)
    spec, _, coords, label, table = _toy(400)
    with pytest.raises(CheckpointError, match=r"unfinished run \(epoch 2 of 4\).*--resume"):
        train(spec, coords, label, table, CFG, checkpoint_dir=tmp_path)
    restarted = train(spec, coords, label, table, CFG, checkpoint_dir=tmp_path, resume="restart")
    assert [h.epoch for h in restarted.history] == [1, 2, 3, 4]
    assert restarted.extra["resumed_after_epoch"] == 0
    # a finished run's checkpoint may be replaced without a flag
    again = train(spec, coords, label, table, CFG, checkpoint_dir=tmp_path)
    assert len(again.history) == 4


@pytest.mark.parametrize("mode", ["yes", "auto"])
def test_interrupted_run_resumes_exactly(tmp_path: Path, mode: str):
    spec, _, coords, label, table = _toy(400)
    full = train(spec, coords, label, table, CFG)
    _interrupted(tmp_path / mode)
    resumed = train(spec, coords, label, table, CFG, checkpoint_dir=tmp_path / mode, resume=mode)
    assert resumed.extra["resumed_after_epoch"] == 2
    assert [h.epoch for h in resumed.history] == [1, 2, 3, 4]
    assert [h.val_loss for h in resumed.history] == pytest.approx(
        [h.val_loss for h in full.history], rel=1e-4
    )


def test_resume_with_other_settings_or_data_names_the_difference(tmp_path: Path):
    _interrupted(tmp_path)
    spec, _, coords, label, table = _toy(400)
    with pytest.raises(CheckpointError, match=r"train\.lr: 0\.001 -> 0\.002"):
        train(spec, coords, label, table, replace(CFG, lr=0.002), checkpoint_dir=tmp_path,
              resume="yes")  # fmt: skip
    with pytest.raises(CheckpointError, match=r"data\.sha256"):
        train(spec, coords[::-1].copy(), label, table, CFG, checkpoint_dir=tmp_path,
              resume="yes")  # fmt: skip
    # more epochs, another thread count: still the same run
    longer = replace(CFG, epochs=5, num_threads=2)
    resumed = train(spec, coords, label, table, longer, checkpoint_dir=tmp_path, resume="yes")
    assert [h.epoch for h in resumed.history] == [1, 2, 3, 4, 5]
    # Dagster's "auto" starts fresh over another configuration's checkpoint instead of failing
    _interrupted(tmp_path / "b")
    fresh = train(spec, coords, label, table, replace(CFG, lr=0.002),
                  checkpoint_dir=tmp_path / "b", resume="auto")  # fmt: skip
    assert fresh.extra["resumed_after_epoch"] == 0


def test_differences_lists_changed_added_and_removed_fields():
    assert differences({"a": "1", "b": "2"}, {"a": "1", "b": "3", "c": "4"}) == [
        "b: 2 -> 3",
        "c: (absent) -> 4",
    ]


def test_bf16_on_cpu_warns_and_trains_in_float32(caplog):
    spec, _, coords, label, table = _toy(200)
    with caplog.at_level("WARNING"):
        result = train(spec, coords, label, table, replace(CFG, epochs=1, bf16=True))
    assert any("bf16 applies on CUDA only" in r.getMessage() for r in caplog.records)
    assert next(result.model.parameters()).dtype == torch.float32
