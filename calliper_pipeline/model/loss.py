"""Symmetric InfoNCE (CLIP) loss.

Each POI is one (location, text) pair; the other pairs of the batch are its negatives. The loss
is the mean of the text->location and location->text cross-entropies over the batch's logits.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def clip_loss(logits_per_text: Tensor) -> Tensor:
    """Symmetric InfoNCE over a square logits matrix.

    Args:
        logits_per_text: (B, B) scaled similarities; row i is text i against every location,
            so the diagonal holds the positive pairs.

    Returns:
        Scalar loss (float32): (CE(rows) + CE(columns)) / 2. Its value for random embeddings is
        about ln(B) (6.93 for B = 1024).
    """
    if logits_per_text.ndim != 2 or logits_per_text.shape[0] != logits_per_text.shape[1]:
        raise ValueError(f"logits must be square (B, B), got {tuple(logits_per_text.shape)}")
    logits = logits_per_text if logits_per_text.dtype == torch.float64 else logits_per_text.float()
    loss: Tensor = _SymmetricInfoNCE.apply(logits)
    return loss


class _SymmetricInfoNCE(torch.autograd.Function):
    """(CE(rows) + CE(columns)) / 2 of square logits with the diagonal as labels, in one node.

    The same value and gradient as two ``F.cross_entropy`` calls (one on the transpose), in
    fewer passes over the (B, B) matrix: forward computes each row's and each column's
    shifted exponentials once and keeps them; backward scales them into
    ``(softmax_rows + softmax_columns - 2 I) / (2B)`` (a new tensor: the saved ones stay
    intact, so a retained graph can run backward again). On a 2-core CPU a four-head
    training step ran ~20 % faster than with the two cross-entropies (their transposed copy,
    log-softmax outputs and the sum of their gradients were ~30 % of the step).
    """

    @staticmethod
    def forward(ctx: Any, logits: Tensor) -> Tensor:
        row_max = logits.amax(dim=1, keepdim=True)
        row_exp = (logits - row_max).exp_()
        row_sum = row_exp.sum(dim=1)
        col_max = logits.amax(dim=0, keepdim=True)
        col_exp = (logits - col_max).exp_()
        col_sum = col_exp.sum(dim=0)
        ctx.save_for_backward(row_exp, row_sum, col_exp, col_sum)
        row_lse = row_max.squeeze(1) + row_sum.log()
        col_lse = col_max.squeeze(0) + col_sum.log()
        n = logits.shape[0]
        return (row_lse.sum() + col_lse.sum() - 2.0 * logits.diagonal().sum()) / (2 * n)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        row_exp, row_sum, col_exp, col_sum = ctx.saved_tensors
        scale = grad / (2 * row_exp.shape[0])
        g = row_exp * (scale / row_sum).unsqueeze(1)  # softmax over each row, scaled
        g.addcmul_(col_exp, (scale / col_sum).unsqueeze(0))  # + softmax over each column
        g.diagonal().sub_(2.0 * scale)
        return g


def _grouped_inputs(scores_per_text: Tensor, text_of_pair: Tensor) -> tuple[Tensor, Tensor]:
    """Checked float32 (U, B) scores and the (U,) count of pairs holding each text."""
    if scores_per_text.ndim != 2 or text_of_pair.shape != (scores_per_text.shape[1],):
        raise ValueError(
            f"need scores (U, B) and text_of_pair (B,), got {tuple(scores_per_text.shape)} "
            f"and {tuple(text_of_pair.shape)}"
        )
    s = scores_per_text.float()
    # index_add_, not bincount: on CUDA bincount reads the maximum back to the host every step
    ones = torch.ones_like(text_of_pair, dtype=s.dtype)
    counts = torch.zeros(s.shape[0], dtype=s.dtype, device=s.device).index_add_(
        0, text_of_pair, ones
    )
    return s, counts


def clip_loss_grouped(scores_per_text: Tensor, text_of_pair: Tensor) -> Tensor:
    """:func:`clip_loss` of a batch whose pairs share few distinct texts, without the (B, B) matrix.

    When the B pairs of a batch use only U distinct texts, row i of the (B, B) logits is row
    ``text_of_pair[i]`` of the (U, B) ``scores_per_text``. Then

    - text -> location, row i: ``logsumexp_j s[t_i, j] - s[t_i, i]`` (U distinct log-sum-exps);
    - location -> text, column j: ``logsumexp_i s[t_i, j] - s[t_j, j]``, where the B rows hold
      each text ``c_t`` times: ``log sum_t c_t exp(s[t, j]) = logsumexp_t (s[t, j] + log c_t)``.

    The result equals ``clip_loss(scores_per_text[text_of_pair])`` up to float rounding, at
    U/B of its cost (London: 69 distinct texts against batches of 1,024).

    Args:
        scores_per_text: (U, B) scaled similarities of each distinct text to each location.
        text_of_pair: (B,) int64, the row of ``scores_per_text`` holding pair i's text.

    Returns:
        Scalar float32 loss.
    """
    s, counts = _grouped_inputs(scores_per_text, text_of_pair)
    positive = s.gather(0, text_of_pair.unsqueeze(0)).squeeze(0)  # (B,) s[t_i, i]
    row_lse = torch.logsumexp(s, dim=1)  # (U,)
    col_lse = torch.logsumexp(s + counts.log().unsqueeze(1), dim=0)  # (B,); absent texts: -inf
    return ((row_lse[text_of_pair] - positive).mean() + (col_lse - positive).mean()) / 2


def clip_loss_multi_positive(logits_per_text: Tensor, target_id: Tensor) -> Tensor:
    """Symmetric InfoNCE where every pair with the same target is a positive.

    Row i (text -> location): ``logsumexp_j l[i, j] - logsumexp_{j: id_j = id_i} l[i, j]``;
    column j likewise. With all ids distinct this is :func:`clip_loss` exactly (the positive
    set is the diagonal); with duplicates the positives' probabilities are summed inside the
    log, so it is never above :func:`clip_loss` of the same logits.

    Args:
        logits_per_text: (B, B) scaled similarities, row i = text i against every location.
        target_id: (B,) int64; pairs i and j share a target iff ``target_id[i] == target_id[j]``.

    Returns:
        Scalar float32 loss.
    """
    if logits_per_text.ndim != 2 or logits_per_text.shape[0] != logits_per_text.shape[1]:
        raise ValueError(f"logits must be square (B, B), got {tuple(logits_per_text.shape)}")
    if target_id.shape != (logits_per_text.shape[0],):
        raise ValueError(f"target_id must be (B,), got {tuple(target_id.shape)}")
    logits = logits_per_text.float()
    same = target_id.unsqueeze(0) == target_id.unsqueeze(1)  # (B, B), symmetric
    positives = logits.masked_fill(~same, float("-inf"))
    rows = torch.logsumexp(logits, dim=1) - torch.logsumexp(positives, dim=1)
    cols = torch.logsumexp(logits, dim=0) - torch.logsumexp(positives, dim=0)
    return (rows.mean() + cols.mean()) / 2


def clip_loss_grouped_multi_positive(scores_per_text: Tensor, text_of_pair: Tensor) -> Tensor:
    """:func:`clip_loss_multi_positive` with the target ids = texts, on (U, B) scores.

    Row i: positives are the locations j with ``t_j = t_i``, all scored by row ``t_i``:
    ``logsumexp_j s[t_i, j] - logsumexp_{j: t_j = t_i} s[t_i, j]``. Column j: the B rows hold
    text t ``c_t`` times, the positives being the ``c_{t_j}`` rows of text ``t_j``:
    ``logsumexp_t (s[t, j] + log c_t) - (s[t_j, j] + log c_{t_j})``.

    Args:
        scores_per_text: (U, B) scaled similarities of each distinct text to each location.
        text_of_pair: (B,) int64 row of ``scores_per_text`` holding pair i's text.

    Returns:
        Scalar float32 loss.
    """
    s, counts = _grouped_inputs(scores_per_text, text_of_pair)
    log_counts = counts.log()
    own = torch.arange(s.shape[0], device=s.device).unsqueeze(1) == text_of_pair.unsqueeze(0)
    pos_lse = torch.logsumexp(s.masked_fill(~own, float("-inf")), dim=1)  # (U,)
    row_lse = torch.logsumexp(s, dim=1)  # (U,)
    positive = s.gather(0, text_of_pair.unsqueeze(0)).squeeze(0)  # (B,) s[t_j, j]
    col_lse = torch.logsumexp(s + log_counts.unsqueeze(1), dim=0)  # (B,)
    rows = row_lse[text_of_pair] - pos_lse[text_of_pair]
    cols = col_lse - (positive + log_counts[text_of_pair])
    return (rows.mean() + cols.mean()) / 2
