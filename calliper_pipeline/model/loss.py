"""Symmetric InfoNCE (CLIP) loss.

Each POI is one (location, text) pair; the other pairs of the batch are its negatives. The loss
is the mean of the text->location and location->text cross-entropies over the batch's logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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
    logits = logits_per_text.float()
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


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
    positive = s.gather(0, text_of_pair.unsqueeze(0)).squeeze(0)  # (B,) s[t_i, i]
    row_lse = torch.logsumexp(s, dim=1)  # (U,)
    col_lse = torch.logsumexp(s + counts.log().unsqueeze(1), dim=0)  # (B,); absent texts: -inf
    return ((row_lse[text_of_pair] - positive).mean() + (col_lse - positive).mean()) / 2
