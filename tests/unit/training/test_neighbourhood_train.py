"""Training with neighbourhood targets (several heads) on a tiny synthetic city."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from calliper_pipeline.config import EncoderConfig, TrainConfig
from calliper_pipeline.model.calliper import ModelSpec, load_model
from calliper_pipeline.training.checkpoints import BEST_CHECKPOINT, LAST_CHECKPOINT
from calliper_pipeline.training.loop import train
from calliper_pipeline.training.targets import index_head, neighbourhood_heads

SMALL = EncoderConfig(hidden_dim=32, num_layers=2, frequency_num=8, min_lambda_m=50.0, embed_dim=16)


def _city(n_poi: int = 600, n_bg: int = 300):
    """Four districts 3 km apart, each with its own dominant text, plus background points."""
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [3000, 0], [0, 3000], [3000, 3000]], float)
    label = rng.integers(0, 4, n_poi)
    poi_xy = centres[label] + rng.normal(0, 400, (n_poi, 2))
    bg_xy = rng.uniform(-1500, 4500, (n_bg, 2))
    table = np.eye(5, 12, dtype=np.float32)  # 4 texts + the empty text (row 4)
    query = np.concatenate([poi_xy, bg_xy])
    heads = [index_head("own", np.concatenate([label, np.full(n_bg, 4)]))]
    heads += neighbourhood_heads(poi_xy, label, table, query, (300.0, 1000.0), empty_row=4)
    spec = ModelSpec(
        SMALL, 12, (0.0, 0.0), 27700, "t", heads=3, head_names=("own", "r300", "r1000")
    )
    return spec, query.astype(np.float32), heads[0].index, table, heads


def test_neighbourhood_training_lowers_the_loss_and_checkpoints(tmp_path: Path) -> None:
    spec, coords, own, table, heads = _city()
    assert own is not None
    cfg = TrainConfig(epochs=2, batch_size=64, lr=3e-3, num_threads=1, seed=0)
    kw = {"heads": heads, "multi_positive": True, "checkpoint_dir": tmp_path}
    result = train(spec, coords, own, table, cfg, **kw)  # type: ignore[arg-type]
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert result.history[-1].val_loss < np.log(64)  # below chance for batches of 64
    assert (tmp_path / LAST_CHECKPOINT).exists()
    best = load_model(tmp_path / BEST_CHECKPOINT)
    assert best.spec == spec
    for k, v in result.model.state_dict().items():
        assert torch.equal(v, best.state_dict()[k]), k
    # resume (weights_only) from last.pt and run one more epoch
    cfg3 = replace(cfg, epochs=3)
    more = train(spec, coords, own, table, cfg3, resume=True, **kw)  # type: ignore[arg-type]
    assert [h.epoch for h in more.history] == [1, 2, 3]
