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
