"""Training data as in-memory tensors, and the per-batch loss.

Batches are index slices of a seeded permutation of the training points. The data:
prepared coordinates (N, 2) (or their positional encoding, computed once), the run's table of
distinct text embeddings (U, D), and one target per head per point (see
:mod:`calliper_pipeline.training.targets`): a row of the table (own text) or a mixture of its
rows (neighbourhood). The loss is the mean over heads of each head's symmetric InfoNCE.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from calliper_pipeline.model.calliper import CalliperModel
from calliper_pipeline.model.loss import (
    clip_loss,
    clip_loss_grouped,
    clip_loss_grouped_multi_positive,
    clip_loss_multi_positive,
)
from calliper_pipeline.training.targets import HeadTargets

PE_CACHE_MAX_BYTES = 2 * 2**30  # precompute the positional encoding of all points up to this
PE_CACHE_CHUNK = 65_536  # points per chunk while precomputing it


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random train/validation split of ``n`` items (the paper's is unseeded).

    Returns (train indices sorted, validation indices in a fixed random order).
    """
    if n < 2:
        raise ValueError(f"need at least 2 POIs to train, got {n}")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_val = max(1, round(n * val_fraction))
    # Validation keeps its seeded random order: batches of a sorted (file-ordered) set would
    # gather POIs of one source and category, many with identical texts, and read ~ln(B).
    return np.sort(perm[n_val:]), perm[:n_val]


@dataclass(frozen=True)
class HeadTensors:
    """One head's targets on the training device (see :class:`targets.HeadTargets`)."""

    index: Tensor | None  # (N,) int64 rows of the text table
    weights: Tensor | None  # (N, U) float32 mixture weights
    group: Tensor  # (N,) int64 target ids

    @classmethod
    def from_targets(cls, head: HeadTargets, device: str) -> HeadTensors:
        def put(a: np.ndarray | None, dtype: np.dtype) -> Tensor | None:
            if a is None:
                return None
            return torch.from_numpy(np.ascontiguousarray(a, dtype)).to(device)

        group = put(head.group, np.dtype(np.int64))
        assert group is not None
        return cls(
            put(head.index, np.dtype(np.int64)), put(head.weights, np.dtype(np.float32)), group
        )


class Batches:
    """Tensors on the training device and the batched loss computation.

    ``features``: the positional encoding of every point, computed once (None: per batch).
    ``heads``: one :class:`HeadTensors` per model head; None: a single own-text head from
    ``text_index`` (the paper).
    ``grouped``: the batch has at least as many points as there are distinct texts, so an
    own-text head scores the distinct texts against the batch
    (:func:`loss.clip_loss_grouped`), the same loss as the (B, B) matrix at U/B of its cost.
    ``multi_positive``: every batch item with the same target is a positive.
    """

    def __init__(
        self,
        coords: Tensor,
        text_index: Tensor,
        text_table: Tensor,
        batch_size: int,
        features: Tensor | None = None,
        heads: Sequence[HeadTensors] | None = None,
        multi_positive: bool = False,
    ):
        self.coords = coords
        self.text_index = text_index
        self.text_table = text_table
        self.batch_size = batch_size
        self.features = features
        self.heads = list(heads) if heads else [HeadTensors(text_index, None, text_index)]
        self.multi_positive = multi_positive
        self.grouped = text_table.shape[0] <= batch_size

    def encode(self, model: CalliperModel, idx: Tensor) -> Tensor:
        """Location embeddings (B, embed_dim * heads) of the points ``idx``."""
        if self.features is not None:
            return model.location_encoder.net(self.features[idx])
        return model.encode_location(self.coords[idx])

    def loss(self, model: CalliperModel, idx: Tensor) -> Tensor:
        """Mean over heads of the heads' symmetric InfoNCE on the batch ``idx`` (scalar)."""
        loc = self.encode(model, idx)
        if len(self.heads) == 1:  # the paper's model: exactly its single loss
            return self.head_loss(model, 0, loc, idx)
        return torch.stack(
            [self.head_loss(model, h, loc, idx) for h in range(len(self.heads))]
        ).mean()

    def head_loss(self, model: CalliperModel, h: int, loc: Tensor, idx: Tensor) -> Tensor:
        """Head ``h``'s symmetric InfoNCE, given the batch's location embeddings ``loc``."""
        head = self.heads[h]
        proj_head = h if model.heads > 1 else None
        if head.index is not None and self.grouped:
            txt = model.encode_text(self.text_table, head=proj_head)  # (U, embed_dim)
            scores = model.logits(loc, txt, h)
            if self.multi_positive:
                return clip_loss_grouped_multi_positive(scores, head.index[idx])
            return clip_loss_grouped(scores, head.index[idx])
        if head.index is not None:
            txt = model.encode_text(self.text_table[head.index[idx]], head=proj_head)
        else:
            assert head.weights is not None
            txt = model.encode_text_mixture(head.weights[idx], self.text_table, h)
        return self.scored(model, h, loc, txt, idx)

    def scored(self, model: CalliperModel, h: int, loc: Tensor, txt: Tensor, idx: Tensor) -> Tensor:
        """Head ``h``'s symmetric InfoNCE of the batch ``idx`` from its location and text
        embeddings (row i of ``loc`` and ``txt`` is point ``idx[i]``)."""
        logits = model.logits(loc, txt, h)
        if self.multi_positive:
            return clip_loss_multi_positive(logits, self.heads[h].group[idx])
        return clip_loss(logits)

    def slices(self, order: Tensor, drop_last: bool) -> list[Tensor]:
        """Consecutive ``batch_size`` slices of ``order`` (the last one kept unless dropped)."""
        n = order.shape[0]
        bs = self.batch_size
        stops = range(bs, n + 1, bs) if drop_last and n >= bs else range(bs, n + bs, bs)
        return [order[s - bs : min(s, n)] for s in stops]


def precompute_features(model: CalliperModel, coords: Tensor) -> Tensor | None:
    """The positional encoding of all ``coords`` (N, pe.out_dim), or None when it has
    parameters or would take more than ``PE_CACHE_MAX_BYTES``."""
    pe = model.location_encoder.pe
    if any(True for _ in pe.parameters()):
        return None
    if coords.shape[0] * pe.out_dim * 4 > PE_CACHE_MAX_BYTES:
        return None
    with torch.no_grad():
        parts = [pe(coords[s : s + PE_CACHE_CHUNK]) for s in range(0, len(coords), PE_CACHE_CHUNK)]
    return torch.cat(parts) if parts else None
