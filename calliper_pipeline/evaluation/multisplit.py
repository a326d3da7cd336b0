"""Probes of several seeds trained side by side when each seed has its own split.

The spatial-block protocol draws a fresh split per seed, so the seeds' training sets differ in
rows and size and :func:`~calliper_pipeline.evaluation.probes.fit_probes` (one shared split)
does not apply. :func:`fit_probes_per_split` trains them together anyway: each step stacks the
weights of the seeds that still have a batch this epoch into one ``baddbmm`` model, pads their
batches to one width and masks the padding out of the losses, so each seed's gradient is
exactly its own batch's. Each seed keeps its own parameters, so ``torch.optim.Adam`` skips the
seeds without a batch this step (no gradient) and keeps a step count per seed: every seed
trains as it would alone (:func:`~calliper_pipeline.evaluation.probes.fit_probe` on its split
inside ``seeded(seed)``), up to float rounding. A seed whose patience has run out drops out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from calliper_pipeline.config import ProbeConfig
from calliper_pipeline.evaluation.data import LANDUSE_TASK
from calliper_pipeline.evaluation.probes import (
    EarlyStopping,
    ProbeFit,
    _draw_loader_seed,
    _loader_permutation,
    _seeded_probes,
)


def _linears(probe: nn.Module) -> list[nn.Linear]:
    return [m for m in probe.modules() if isinstance(m, nn.Linear)]


def _forward(layers: Sequence[Sequence[nn.Linear]], x: Tensor) -> Tensor:
    """(A, b, D) -> (A, b, C) through the probes whose layers are given (one per row of x)."""
    h = x
    depth = len(layers[0])
    for i in range(depth):
        w = torch.stack([ls[i].weight for ls in layers]).transpose(1, 2)
        b = torch.stack([ls[i].bias for ls in layers]).unsqueeze(1)
        h = torch.baddbmm(b, h, w)
        if i < depth - 1:
            h = torch.relu(h)
    return h


def _row_losses(task: str, out: Tensor, target: Tensor) -> Tensor:
    """(A, b) per-row losses: cross-entropy (LUC) or KL summed over the classes (SDM)."""
    a, b, c = out.shape
    if task == LANDUSE_TASK:
        ce = F.cross_entropy(out.reshape(a * b, c), target.reshape(a * b), reduction="none")
        return ce.view(a, b)
    return F.kl_div(F.log_softmax(out, dim=2), target, reduction="none").sum(dim=2)


def _padded(chunks: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """(A, width) row indices (padding repeats each chunk's first row) and a 0/1 mask."""
    width = max(len(c) for c in chunks)
    rows = torch.stack([F.pad(c, (0, width - len(c)), value=int(c[0])) for c in chunks])
    mask = torch.zeros(rows.shape, dtype=torch.float32, device=rows.device)
    for i, c in enumerate(chunks):
        mask[i, : len(c)] = 1.0
    return rows, mask


def _train_epoch(
    layers: Sequence[Sequence[nn.Linear]],
    opt: torch.optim.Optimizer,
    task: str,
    data: tuple[Tensor, Tensor],
    train_rows: Sequence[Tensor],
    gens: Sequence[torch.Generator],
    active: Sequence[int],
    batch_size: int,
) -> None:
    """One epoch of the ``active`` seeds, each on its own shuffle of its own training rows."""
    x, y = data
    perms = {s: train_rows[s][_loader_permutation(len(train_rows[s]), gens[s])] for s in active}
    n_steps = max(math.ceil(len(perms[s]) / batch_size) for s in active)
    for j in range(n_steps):
        ids = [s for s in active if j * batch_size < len(perms[s])]
        rows, mask = _padded([perms[s][j * batch_size : (j + 1) * batch_size] for s in ids])
        per_row = _row_losses(task, _forward([layers[s] for s in ids], x[rows]), y[rows])
        loss = ((per_row * mask).sum(dim=1) / mask.sum(dim=1)).sum()
        opt.zero_grad(set_to_none=True)  # seeds left out keep grad None: Adam skips them
        loss.backward()
        opt.step()
    for s in active:
        _draw_loader_seed(gens[s])  # the validation DataLoader's iterator draws one too


@torch.no_grad()
def _val_losses(
    layers: Sequence[Sequence[nn.Linear]],
    task: str,
    data: tuple[Tensor, Tensor],
    val_rows: Sequence[Tensor],
    active: Sequence[int],
    batch_size: int,
) -> dict[int, float]:
    """Each active seed's validation loss: the mean of its per-batch mean losses."""
    x, y = data
    rows, _ = _padded([val_rows[s] for s in active])
    per_row = _row_losses(task, _forward([layers[s] for s in active], x[rows]), y[rows])
    out = {}
    for i, s in enumerate(active):
        v = per_row[i, : len(val_rows[s])]
        out[s] = float(np.mean([c.mean().item() for c in v.split(batch_size)]))
    return out


def fit_probes_per_split(
    kind: str,
    task: str,
    data: tuple[Tensor, Tensor],
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    n_out: int,
    seeds: Sequence[int],
    cfg: ProbeConfig,
) -> list[tuple[nn.Module, ProbeFit]]:
    """Seed ``seeds[i]``'s probe trained on ``splits[i]``; each seed's restored probe and fit.

    Args:
        kind: ``"linear"`` or ``"mlp"``.
        task: ``"luc"`` (cross-entropy) or ``"sdm"`` (KL divergence).
        data: (x, y) of every row; x is (N, D) float32.
        splits: per seed, its (train, val) row indices into ``data``.
        n_out: classes (LUC) or proportions (SDM) per row.
        seeds: one probe per seed, with the draws of its single-seed run.
        cfg: optimiser, batch size, epochs and patience.
    """
    if len(splits) != len(seeds) or not seeds:
        raise ValueError(f"need one split per seed, got {len(splits)} for {len(seeds)} seeds")
    x = data[0]
    probes, gens = _seeded_probes(kind, x.shape[1], n_out, seeds, cfg)
    for p in probes:
        p.to(x.device).train()
    layers = [_linears(p) for p in probes]
    train_rows = [torch.from_numpy(np.asarray(t, np.int64)).to(x.device) for t, _ in splits]
    val_rows = [torch.from_numpy(np.asarray(v, np.int64)).to(x.device) for _, v in splits]
    opt = torch.optim.Adam([q for p in probes for q in p.parameters()], lr=cfg.lr)
    stoppers = [EarlyStopping(cfg.patience) for _ in seeds]
    history: list[list[float]] = [[] for _ in seeds]
    active = list(range(len(seeds)))
    for epoch in range(1, cfg.max_epochs + 1):
        _train_epoch(layers, opt, task, data, train_rows, gens, active, cfg.batch_size)
        losses = _val_losses(layers, task, data, val_rows, active, cfg.batch_size)
        for s, loss in losses.items():
            history[s].append(loss)
            if stoppers[s].step(loss, probes[s], epoch):
                active.remove(s)
        if not active:
            break
    out = []
    for s, probe in enumerate(probes):
        stoppers[s].restore(probe)
        probe.eval()
        fit = ProbeFit(
            stoppers[s].best_epoch, len(history[s]), stoppers[s].best_loss, tuple(history[s])
        )
        out.append((probe, fit))
    return out
