"""The model's speed-ups keep the results: fast dropout draws torch's masks, the FCNet step is
bitwise the plain expression, and the grouped InfoNCE equals the (B, B) one."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from calliper_pipeline.model.encodings.networks import (
    FCNet,
    ResLayer,
    dropout_keep_mask,
    fast_dropout,
)
from calliper_pipeline.model.loss import clip_loss, clip_loss_grouped


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
