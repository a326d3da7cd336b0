"""The training speed-ups keep the results: the precomputed encoding equals the per-batch one,
the grouped loss of a batch equals the plain (B, B) one, and the thread choice leaves the RNG
and the model alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calliper_pipeline.config import EncoderConfig, TrainConfig
from calliper_pipeline.model.calliper import CalliperModel, ModelSpec
from calliper_pipeline.model.loss import clip_loss
from calliper_pipeline.training.batches import Batches, precompute_features
from calliper_pipeline.training.optim import choose_threads

SMALL = EncoderConfig(hidden_dim=32, num_layers=2, frequency_num=8, min_lambda_m=50.0)


def _toy(n: int = 300) -> tuple[ModelSpec, torch.Tensor, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(0)
    coords = torch.from_numpy(rng.normal(0, 2000, (n, 2)).astype(np.float32))
    index = torch.from_numpy(rng.integers(0, 5, n))
    table = torch.from_numpy(rng.normal(size=(5, 16)).astype(np.float32))
    spec = ModelSpec(SMALL, 16, (530_000.0, 180_000.0), 27700, "toy")
    return spec, coords, index, table


def test_training_loss_equals_the_plain_per_batch_loss() -> None:
    spec, coords, index, table = _toy()
    torch.manual_seed(4)
    model = CalliperModel(spec).train()
    fast = Batches(coords, index, table, 64, features=precompute_features(model, coords))
    assert fast.grouped and fast.features is not None
    idx = torch.randperm(len(coords))[:64]
    torch.manual_seed(8)
    ours = fast.loss(model, idx)
    g_ours = torch.autograd.grad(ours, list(model.parameters()))
    torch.manual_seed(8)
    loc = model.encode_location(coords[idx])  # the encoding per batch, (B, B) logits
    plain = clip_loss(model.logits(loc, model.encode_text(table)[index[idx]]))
    g_plain = torch.autograd.grad(plain, list(model.parameters()))
    assert ours.item() == pytest.approx(plain.item(), rel=1e-6)
    for a, b in zip(g_ours, g_plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_precomputed_encoding_equals_per_batch() -> None:
    spec, coords, _, _ = _toy()
    model = CalliperModel(spec)
    feats = precompute_features(model, coords)
    assert feats is not None
    torch.testing.assert_close(feats[:50], model.location_encoder.pe(coords[:50]))


def test_choose_threads_leaves_the_rng_and_model_alone() -> None:
    spec, coords, index, table = _toy()
    model = CalliperModel(spec)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = Batches(coords, index, table, 64, features=precompute_features(model, coords))
    torch.manual_seed(5)
    state = torch.get_rng_state()
    n = choose_threads(model, data, torch.arange(len(coords)), TrainConfig(batch_size=64))
    assert n >= 1 and torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
