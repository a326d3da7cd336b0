import math

import pytest
import torch

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
