"""Multi-head CaLLiPer model: losses, save/load round trip, and safe loading."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from calliper_pipeline.config import EncoderConfig
from calliper_pipeline.model.calliper import (
    CalliperModel,
    ModelSpec,
    embed_points,
    load_model,
    save_model,
)
from calliper_pipeline.model.loss import (
    clip_loss,
    clip_loss_grouped,
    clip_loss_grouped_multi_positive,
    clip_loss_multi_positive,
)

SMALL = EncoderConfig(hidden_dim=32, num_layers=2, frequency_num=8, embed_dim=16)


def _spec(heads: int) -> ModelSpec:
    return ModelSpec(SMALL, 24, (0.0, 0.0), 27700, "test", heads=heads)


def test_multi_positive_equals_one_hot_when_targets_are_distinct() -> None:
    logits = torch.randn(32, 32, generator=torch.Generator().manual_seed(0)) * 3
    ids = torch.randperm(32)
    assert torch.allclose(clip_loss_multi_positive(logits, ids), clip_loss(logits), atol=1e-6)


def test_multi_positive_is_lower_with_duplicates() -> None:
    logits = torch.randn(32, 32, generator=torch.Generator().manual_seed(1)) * 3
    ids = torch.arange(32) // 4  # groups of four identical targets
    assert clip_loss_multi_positive(logits, ids) < clip_loss(logits)


def test_grouped_multi_positive_matches_dense() -> None:
    g = torch.Generator().manual_seed(2)
    scores = torch.randn(5, 40, generator=g) * 2  # 5 distinct texts, 40 pairs
    text_of_pair = torch.randint(0, 4, (40,), generator=g)  # text 4 absent from the batch
    dense = scores[text_of_pair]
    want = clip_loss_multi_positive(dense, text_of_pair)
    got = clip_loss_grouped_multi_positive(scores, text_of_pair)
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(clip_loss_grouped(scores, text_of_pair), clip_loss(dense), atol=1e-5)
    s = scores.clone().requires_grad_(True)
    clip_loss_grouped_multi_positive(s, text_of_pair).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()


@torch.no_grad()
def test_multi_head_loss_of_aligned_pairs_is_lower_than_shuffled() -> None:
    torch.manual_seed(0)
    model = CalliperModel(_spec(3)).eval()
    loc = model.encode_location(torch.rand(64, 2) * 4000 - 2000)
    texts = []
    for h in range(3):  # the text whose head-h projection is the head's location embedding
        cols = model.head_slice(h)
        w, b = model.text_projection.weight[cols], model.text_projection.bias[cols]
        texts.append(torch.linalg.lstsq(w, (loc[:, cols] - b).t()).solution.t())

    def loss(perm: torch.Tensor) -> float:
        per_head = [
            clip_loss(model.logits(loc, model.encode_text(texts[h][perm], head=h), h))
            for h in range(3)
        ]
        return float(torch.stack(per_head).mean())

    assert loss(torch.arange(64)) < loss(torch.randperm(64))


def test_one_head_keeps_the_paper_parameters() -> None:
    model = CalliperModel(_spec(1))
    assert model.logit_scale.ndim == 0
    assert model.out_dim == SMALL.embed_dim
    multi = CalliperModel(_spec(4))
    assert multi.logit_scale.shape == (4,)
    assert multi.text_projection.out_features == 4 * SMALL.embed_dim
    assert multi.encode_location(torch.zeros(3, 2)).shape == (3, 4 * SMALL.embed_dim)
    assert multi.encode_text(torch.zeros(3, 24)).shape == (3, 4 * SMALL.embed_dim)
    assert multi.encode_text(torch.zeros(3, 24), head=2).shape == (3, SMALL.embed_dim)


def test_mixture_projection_equals_projecting_the_mixed_embedding() -> None:
    model = CalliperModel(_spec(2))
    g = torch.Generator().manual_seed(3)
    table, weights = torch.randn(7, 24, generator=g), torch.rand(5, 7, generator=g)
    want = model.encode_text(weights @ table, head=1)
    assert torch.allclose(model.encode_text_mixture(weights, table, 1), want, atol=1e-5)


def test_multi_head_save_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(1)
    names = ("own", "r200", "r500", "r1000")
    spec = ModelSpec(SMALL, 24, (500_000.0, 180_000.0), 27700, "t", heads=4, head_names=names)
    model = CalliperModel(spec)
    path = save_model(tmp_path / "m.pt", model, extra={"note": "x"})
    again = load_model(path)
    assert again.spec == model.spec
    x = np.array([500_100.0, 501_000.0])
    y = np.array([180_000.0, 179_500.0])
    a, b = embed_points(model, x, y), embed_points(again, x, y)
    assert a.shape == (2, 4 * SMALL.embed_dim)
    np.testing.assert_array_equal(a, b)
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k


class _Payload:
    """Unpickling this would run ``Path.touch`` on the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


def test_load_model_refuses_a_pickle_payload(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.pt"
    torch.save({"spec": _Payload(marker), "state_dict": {}}, bad)
    with pytest.raises(pickle.UnpicklingError):
        load_model(bad)
    assert not marker.exists()
    # a plain pickle file (not a torch zip) is refused as well
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(pickle.UnpicklingError):
        load_model(raw)
    assert not marker.exists()


def test_unit_heads_representation_normalises_each_head(tmp_path: Path) -> None:
    """``representation = "unit_heads"``: predict's vectors are the raw heads, each
    L2-normalised; the weights (and so training) are the same; the choice survives a save."""
    from dataclasses import replace

    torch.manual_seed(3)
    raw = CalliperModel(_spec(3))
    spec = replace(_spec(3), encoder=replace(SMALL, representation="unit_heads"))
    torch.manual_seed(3)
    unit = CalliperModel(spec)
    for a, b in zip(raw.state_dict().values(), unit.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    x = np.random.default_rng(0).uniform(-5_000, 5_000, (50, 2))
    r = embed_points(raw, x_m=x[:, 0], y_m=x[:, 1])
    u = embed_points(unit, x_m=x[:, 0], y_m=x[:, 1])
    assert u.shape == r.shape == (50, 48)
    for h in range(3):
        block = r[:, h * 16 : (h + 1) * 16]
        want = block / np.linalg.norm(block, axis=1, keepdims=True)
        np.testing.assert_allclose(u[:, h * 16 : (h + 1) * 16], want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(u[:, h * 16 : (h + 1) * 16], axis=1), 1, 1e-5)
    save_model(tmp_path / "m.pt", unit)
    again = load_model(tmp_path / "m.pt")
    assert again.spec.encoder.representation == "unit_heads"
    np.testing.assert_array_equal(embed_points(again, x_m=x[:, 0], y_m=x[:, 1]), u)
    with pytest.raises(ValueError, match="representation"):
        CalliperModel(replace(spec, encoder=replace(SMALL, representation="whitened")))
