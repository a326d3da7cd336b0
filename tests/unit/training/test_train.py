"""Training: the loss falls on a synthetic city, checkpoints resume, seeds reproduce."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calliper_pipeline.config import EncoderConfig, TrainConfig
from calliper_pipeline.model.calliper import (
    CalliperModel,
    ModelSpec,
    embed_points,
    load_model,
    prepare_coords,
    save_model,
)
from calliper_pipeline.training.batches import split_indices
from calliper_pipeline.training.loop import train
from calliper_pipeline.training.optim import parameter_groups

SMALL = EncoderConfig(hidden_dim=64, num_layers=2, frequency_num=8, min_lambda_m=50.0)


def _toy(n: int = 1200, seed: int = 0):
    """Four clusters of points 3 km apart, each with its own text."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0], [3000, 0], [0, 3000], [3000, 3000]], float)
    label = rng.integers(0, 4, n)
    xy = centres[label] + rng.normal(0, 300, (n, 2)) + np.array([500_000.0, 180_000.0])
    table = np.eye(4, 16, dtype=np.float32)
    spec = ModelSpec(
        encoder=SMALL,
        text_dim=16,
        centre_m=(501_500.0, 181_500.0),
        metric_epsg=27700,
        text_encoder_id="toy",
    )
    coords = prepare_coords(spec, "metric", xy[:, 0], xy[:, 1])
    return spec, xy, coords, label, table


def test_split_is_seeded_and_disjoint():
    a_train, a_val = split_indices(100, 0.1, 3)
    _b_train, b_val = split_indices(100, 0.1, 3)
    assert np.array_equal(a_val, b_val) and len(a_val) == 10
    assert not np.array_equal(a_val, np.sort(a_val))  # random order: mixed val batches
    assert set(a_train).isdisjoint(a_val) and len(a_train) + len(a_val) == 100


def test_parameter_groups_follow_the_paper():
    model = CalliperModel(_toy()[0])
    no_decay, decay = parameter_groups(model, 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert any(p is model.logit_scale for p in no_decay["params"])
    assert all(p.ndim >= 2 for p in decay["params"])
    n_all = sum(1 for p in model.parameters())
    assert len(no_decay["params"]) + len(decay["params"]) == n_all


def test_training_lowers_loss_and_learns_clusters(tmp_path):
    spec, xy, coords, label, table = _toy()
    cfg = TrainConfig(epochs=12, batch_size=128, lr=3e-3, seed=1)
    seen = []
    result = train(spec, coords, label, table, cfg, on_epoch_end=seen.append)
    assert [s.epoch for s in seen] == list(range(1, 13))
    assert result.history[-1].train_loss < result.history[0].train_loss - 0.3
    assert result.best_val_loss == min(h.val_loss for h in result.history)
    assert result.n_train + result.n_val == len(coords)
    # the learned location embedding points at its own cluster's text
    emb = torch.nn.functional.normalize(torch.from_numpy(embed_points(result.model, *xy.T)), dim=1)
    with torch.no_grad():
        txt = result.model.encode_text(torch.from_numpy(table))
    pred = (emb @ txt.t()).argmax(1).numpy()
    assert (pred == label).mean() > 0.9
    path = save_model(tmp_path / "m.pt", result.model)
    again = load_model(path)
    assert np.allclose(embed_points(again, *xy[:5].T), embed_points(result.model, *xy[:5].T))


def test_same_seed_same_result():
    spec, _, coords, label, table = _toy(400)
    cfg = TrainConfig(epochs=2, batch_size=64, seed=5)
    a = train(spec, coords, label, table, cfg)
    b = train(spec, coords, label, table, cfg)
    assert [h.val_loss for h in a.history] == pytest.approx([h.val_loss for h in b.history])


def test_resume_continues_from_last_checkpoint(tmp_path):
    spec, _, coords, label, table = _toy(400)
    full = train(spec, coords, label, table, TrainConfig(epochs=4, batch_size=64, seed=2))
    train(
        spec,
        coords,
        label,
        table,
        TrainConfig(epochs=2, batch_size=64, seed=2),
        checkpoint_dir=tmp_path,
    )
    resumed = train(
        spec,
        coords,
        label,
        table,
        TrainConfig(epochs=4, batch_size=64, seed=2),
        checkpoint_dir=tmp_path,
        resume=True,
    )
    assert [h.epoch for h in resumed.history] == [1, 2, 3, 4]
    assert [h.val_loss for h in resumed.history] == pytest.approx(
        [h.val_loss for h in full.history], rel=1e-4
    )


def test_early_stopping_stops():
    spec, _, coords, label, table = _toy(400)
    cfg = TrainConfig(epochs=50, batch_size=64, lr=0.0, seed=2, early_stopping_patience=2)
    result = train(spec, coords, label, table, cfg)
    assert result.stopped_early and len(result.history) == 3


def test_cuda_request_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    spec, _, coords, label, table = _toy(100)
    with pytest.raises(RuntimeError, match="cuda"):
        train(spec, coords, label, table, TrainConfig(epochs=1, device="cuda"))
