import math

import pytest
import torch
import torch.nn.functional as F

from calliper_pipeline.model.loss import clip_loss


def test_uniform_logits_give_log_batch():
    logits = torch.zeros(8, 8)
    assert clip_loss(logits).item() == pytest.approx(math.log(8), rel=1e-6)


def test_symmetric_and_hand_computed():
    logits = torch.tensor([[2.0, 0.0], [1.0, 3.0]])
    # rows: CE([2,0],0)=log(1+e^-2); CE([1,3],1)=log(1+e^-2)
    # cols: CE([2,1],0)=log(1+e^-1); CE([0,3],1)=log(1+e^-3)
    rows = 2 * math.log1p(math.exp(-2)) / 2
    cols = (math.log1p(math.exp(-1)) + math.log1p(math.exp(-3))) / 2
    assert clip_loss(logits).item() == pytest.approx((rows + cols) / 2, rel=1e-6)
    assert clip_loss(logits.t()).item() == pytest.approx(clip_loss(logits).item(), rel=1e-6)


def test_aligned_pairs_beat_shuffled():
    torch.manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(32, 16), dim=1)
    aligned = clip_loss(10 * z @ z.t())
    shuffled = clip_loss(10 * z @ z[torch.randperm(32)].t())
    assert aligned.item() < 0.1 < shuffled.item()


def test_rejects_non_square():
    with pytest.raises(ValueError):
        clip_loss(torch.zeros(3, 4))


def _reference(logits: torch.Tensor) -> torch.Tensor:
    """The textbook symmetric InfoNCE: two cross-entropies with the diagonal as labels."""
    labels = torch.arange(logits.shape[0])
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


@pytest.mark.parametrize("scale", [1.0, 30.0, 100.0])
def test_fused_loss_equals_two_cross_entropies_in_value_and_gradient(scale: float) -> None:
    gen = torch.Generator().manual_seed(int(scale))
    base = torch.nn.functional.normalize(torch.randn(64, 16, generator=gen), dim=1)
    logits = (
        scale * base @ torch.nn.functional.normalize(torch.randn(64, 16, generator=gen), dim=1).t()
    )
    a = logits.clone().requires_grad_()
    b = logits.clone().requires_grad_()
    fused, ref = clip_loss(a), _reference(b)
    (3.0 * fused).backward()
    (3.0 * ref).backward()
    assert torch.allclose(fused, ref, rtol=1e-6, atol=1e-6)
    assert torch.allclose(a.grad, b.grad, rtol=1e-5, atol=1e-7)
    assert torch.isfinite(a.grad).all()


def test_fused_loss_gradcheck_and_a_retained_graph() -> None:
    x = torch.randn(7, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(clip_loss, (x,))
    loss = clip_loss(x)
    loss.backward(retain_graph=True)
    first = x.grad.clone()
    loss.backward()  # the saved exponentials were not overwritten by the first backward
    assert torch.allclose(x.grad, 2 * first)


def test_fused_loss_takes_bf16_logits_and_returns_float32() -> None:
    logits = torch.randn(16, 16).to(torch.bfloat16).requires_grad_()
    loss = clip_loss(logits)
    loss.backward()
    assert loss.dtype == torch.float32 and logits.grad.dtype == torch.bfloat16
    assert torch.allclose(loss, _reference(logits.detach().float()), atol=1e-6)
