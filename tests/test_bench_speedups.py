"""The speed-ups keep the results: fast dropout draws torch's masks, the grouped InfoNCE equals
the (B, B) one, the precomputed encoding equals the per-batch one, stacked probes train as the
single-probe loop, and the thread choice leaves the RNG alone. Plus the bench helpers."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.common import Section, Table, append_section
from bench.flops import step_flops
from calliper_pipeline.config import EncoderConfig, ProbeConfig, TrainConfig
from calliper_pipeline.evaluation.probes import build_probe, fit_probe, fit_probes, seeded
from calliper_pipeline.model.calliper import CalliperModel, ModelSpec
from calliper_pipeline.model.encodings.networks import (
    FCNet,
    ResLayer,
    dropout_keep_mask,
    fast_dropout,
)
from calliper_pipeline.model.loss import clip_loss, clip_loss_grouped
from calliper_pipeline.training.loop import _Batches, choose_threads, precompute_features

SMALL = EncoderConfig(hidden_dim=32, num_layers=2, frequency_num=8, min_lambda_m=50.0)


@pytest.mark.parametrize("p", [0.5, 0.1, 0.3, 0.75])
def test_fast_dropout_draws_torch_masks_exactly(p: float) -> None:
    x = torch.randn(37, 53, requires_grad=True)
    torch.manual_seed(11)
    ref = F.dropout(x, p, training=True)
    (g_ref,) = torch.autograd.grad(ref.square().sum(), x)
    after_ref = torch.rand(4)
    torch.manual_seed(11)
    ours = fast_dropout(x, p, training=True)
    (g_ours,) = torch.autograd.grad(ours.square().sum(), x)
    after_ours = torch.rand(4)
    assert torch.equal(ours, ref) and torch.equal(g_ours, g_ref)
    assert torch.equal(after_ours, after_ref)  # the generator advanced exactly as torch's
    assert fast_dropout(x, p, training=False) is x


def test_keep_mask_is_bernoulli() -> None:
    torch.manual_seed(3)
    ref = torch.empty(64, 65).bernoulli_(0.6)
    torch.manual_seed(3)
    assert torch.equal(dropout_keep_mask((64, 65), 0.6), ref)


def test_fcnet_training_step_is_bitwise_the_plain_expression() -> None:
    def plain(block: ResLayer, x: torch.Tensor) -> torch.Tensor:
        h = F.dropout(torch.relu(block.w1(x)), block.dropout.p, block.training)
        return x + torch.relu(block.w2(h))

    torch.manual_seed(0)
    net = FCNet(16, 32, 8, num_layers=2, dropout=0.5).train()
    ref_net = copy.deepcopy(net)
    x = torch.randn(50, 16)
    torch.manual_seed(9)
    out = net(x)
    out.square().sum().backward()
    torch.manual_seed(9)
    h = torch.relu(ref_net.feats[0](x))
    for block in ref_net.feats[2:]:
        h = plain(block, h)
    ref = ref_net.class_emb(h)
    ref.square().sum().backward()
    assert torch.equal(out, ref)
    for a, b in zip(net.parameters(), ref_net.parameters(), strict=True):
        assert torch.equal(a.grad, b.grad)


def test_grouped_clip_loss_equals_the_full_matrix() -> None:
    torch.manual_seed(1)
    u, b = 12, 40
    text = torch.randn(u, 8, requires_grad=True)
    loc = torch.randn(b, 8, requires_grad=True)
    group = torch.randint(0, u - 3, (b,))  # the last texts are absent from the batch
    full = clip_loss((3.0 * text @ loc.t())[group])
    g_full = torch.autograd.grad(full, [text, loc])
    grouped = clip_loss_grouped(3.0 * text @ loc.t(), group)
    g_grouped = torch.autograd.grad(grouped, [text, loc])
    assert grouped.item() == pytest.approx(full.item(), rel=1e-6)
    for a, c in zip(g_grouped, g_full, strict=True):
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        clip_loss_grouped(torch.zeros(3, 4), torch.zeros(5, dtype=torch.long))


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
    fast = _Batches(coords, index, table, 64, features=precompute_features(model, coords))
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
    data = _Batches(coords, index, table, 64, features=precompute_features(model, coords))
    torch.manual_seed(5)
    state = torch.get_rng_state()
    n = choose_threads(model, data, torch.arange(len(coords)), TrainConfig(batch_size=64))
    assert n >= 1 and torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_stacked_probes_train_as_the_single_probe_loop() -> None:
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.normal(size=(300, 6)).astype(np.float32))
    y = torch.from_numpy((x[:, 0] * x[:, 1] > 0).numpy().astype(np.int64))
    tr, va = (x[:220], y[:220]), (x[220:], y[220:])
    cfg = ProbeConfig(seeds=(42, 7, 0), max_epochs=12, patience=3)
    for kind in ("linear", "mlp"):
        stacked = fit_probes(kind, "luc", tr, va, 2, cfg.seeds, cfg)
        for seed, (model, fit) in zip(cfg.seeds, stacked, strict=True):
            with seeded(seed):
                ref = build_probe(kind, 6, 2, cfg.mlp_hidden)
                ref_fit = fit_probe(ref, "luc", tr, va, cfg)
            assert fit.best_epoch == ref_fit.best_epoch
            assert fit.epochs_run == ref_fit.epochs_run
            np.testing.assert_allclose(fit.val_losses, ref_fit.val_losses, rtol=1e-5)
            for a, b in zip(model.state_dict().values(), ref.state_dict().values(), strict=True):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_nominal_flops_by_hand() -> None:
    f = step_flops(EncoderConfig(), 1024)
    fwd = 2 * (128 * 256 + 8 * 256 * 256 + 256 * 128)
    assert f.fcnet_forward == fwd
    assert f.fcnet_backward == 2 * fwd - 2 * 128 * 256  # no input gradient at the first layer
    assert f.logits == 3 * 2 * 1024 * 128  # (B, B) scores: forward + two input gradients
    assert f.projection == 2 * 2 * 384 * 128
    assert math.isclose(f.train / 1e6, 4.457, rel_tol=1e-3)  # the issue's ~4.5 MFLOP per POI
    executed = step_flops(EncoderConfig(), 1024, distinct_texts=69, nominal=False)
    assert executed.pe == 0 and executed.logits == 3 * 2 * 69 * 128
    assert executed.train < f.train


def test_bench_tables_and_sections(tmp_path) -> None:  # type: ignore[no-untyped-def]
    t = Table(("a", "b"))
    t.add(1234567, 0.5)
    t.add("x", float("nan"))
    assert t.markdown().splitlines() == [
        "| a | b |",
        "| --- | --- |",
        "| 1,234,567 | 0.50 |",
        "| x | – |",
    ]
    with pytest.raises(ValueError):
        t.add(1)
    s = Section("demo", command="python -m bench.demo", commit="abc", machine="m", load="0")
    s.table("caption", t)
    path = tmp_path / "bench.md"
    s.write(path, echo=False)
    append_section(path, "## second\n")
    text = path.read_text()
    assert text.startswith("# Benchmarks") and "python -m bench.demo" in text
    assert text.index("## demo") < text.index("## second")
