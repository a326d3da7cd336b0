"""Optimiser and CPU thread choice for the training loop.

- AdamW as the authors: no weight decay on biases, 1-D parameters and ``logit_scale``; torch's
  fused kernel where it applies.
- CPU threads: the faster of one thread and one per physical core is measured on real training
  steps (on a busy 2-core machine two threads can be ten times slower than one).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from typing import Any

import torch
from torch import Tensor

from calliper_pipeline.config import TrainConfig
from calliper_pipeline.model.calliper import CalliperModel
from calliper_pipeline.training.batches import Batches

logger = logging.getLogger(__name__)


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups as the authors: no decay for biases, 1-D params and logit_scale."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "bias" in name or "logit_scale" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [
        {"params": no_decay, "weight_decay": 0.0},
        {"params": decay, "weight_decay": weight_decay},
    ]


def make_optimizer(
    model: torch.nn.Module, cfg: TrainConfig, lr: float | None = None
) -> torch.optim.AdamW:
    """AdamW over :func:`parameter_groups`; torch's fused kernel where it applies (float32 on
    CPU or CUDA: one pass per tensor instead of about ten, the same update up to rounding)."""
    params = list(model.parameters())
    fused = all(p.dtype == torch.float32 and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(
        parameter_groups(model, cfg.weight_decay),
        lr=cfg.lr if lr is None else lr,
        fused=fused or None,
    )


def _physical_cores() -> int:
    pairs: set[tuple[str, str]] = set()
    phys = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("physical id"):
                    phys = line.split(":", 1)[1].strip()
                elif line.startswith("core id"):
                    pairs.add((phys, line.split(":", 1)[1].strip()))
    except OSError:
        pass
    return len(pairs) or os.cpu_count() or 1


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def choose_threads(
    model: CalliperModel, data: Batches, idx: Tensor, cfg: TrainConfig, repeats: int = 3
) -> int:
    """The faster of 1 thread and one per physical core for this training step, measured.

    Times ``repeats`` steps of each (interleaved, best of) on a copy of the model with its own
    optimizer; the global RNG is restored, so training draws exactly what it would have.
    """
    candidates = sorted({1, min(_physical_cores(), _usable_cpus())})
    if len(candidates) == 1:
        return candidates[0]
    probe = copy.deepcopy(model).train()
    opt = make_optimizer(probe, cfg, lr=0.0)  # lr 0: the copy's steps change nothing
    batch = idx[: data.batch_size]
    best = dict.fromkeys(candidates, math.inf)
    timing = list(candidates)
    with torch.random.fork_rng(devices=[]):
        for rnd in range(repeats + 1):  # round 0 warms up
            for n in timing:
                torch.set_num_threads(n)
                t0 = time.perf_counter()
                loss = data.loss(probe, batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if rnd:
                    best[n] = min(best[n], time.perf_counter() - t0)
            if rnd:  # stop timing a setting already 3 times slower than one thread
                timing = [n for n in timing if best[n] <= 3 * best[1]]
    chosen = min(candidates, key=lambda n: best[n])
    logger.info(
        "torch threads: %d (step %s)",
        chosen,
        ", ".join(f"{n} thread(s) {best[n] * 1e3:.0f} ms" for n in candidates),
    )
    return chosen
