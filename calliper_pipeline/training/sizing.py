"""Training settings chosen from the city's size, where the operator did not set them.

A preset's batch and epochs are tuned on London (about 190k training points): a 3,000-POI city
trained with batches of 1,024 gets two optimiser steps an epoch (and drops the rest of its
points), and 100 epochs without early stopping keep fitting long after validation stopped
improving. For a city with fewer than :data:`SMALL_CITY_POINTS` training points
(:func:`size_for_city`):

- ``batch_size``: the largest power of two giving at least :data:`MIN_BATCHES_PER_EPOCH`
  batches of the training split an epoch, between :data:`MIN_BATCH` and the preset's;
- ``early_stopping_patience``: :data:`SMALL_CITY_PATIENCE` epochs when the preset has none
  (the best validation epoch is kept either way; this stops paying for epochs after it);
- ``epochs``: the preset's, an upper bound once early stopping is on.

A value the operator set (``--batch-size``, ``--epochs``, ``--early-stopping``, or the
Launchpad's fields) is never changed; larger cities keep the preset. What was chosen, and why,
is returned as one sentence (logged, an MLflow tag ``train.sizing`` and Dagster metadata).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from typing import Any

from calliper_pipeline.config import TrainConfig

SMALL_CITY_POINTS = 20_000  # training points (POIs + background) below which sizing applies
MIN_BATCHES_PER_EPOCH = 8
MIN_BATCH = 64
SMALL_CITY_PATIENCE = 5


def size_for_city(
    cfg: TrainConfig, n_points: int, explicit: Collection[str] = ()
) -> tuple[TrainConfig, str]:
    """(``cfg`` sized for ``n_points`` training points, the sentence saying what was chosen).

    ``explicit``: the flat names the operator set (``batch_size``, ``epochs``,
    ``early_stopping_patience``); those are kept as they are.
    """
    n_train = n_points - max(1, round(n_points * cfg.val_fraction))
    kept = f"batch {cfg.batch_size}, up to {cfg.epochs} epochs"
    if n_points >= SMALL_CITY_POINTS:
        return cfg, f"{n_points:,} points (>= {SMALL_CITY_POINTS:,}): the preset's {kept}"
    changes: dict[str, Any] = {}
    if "batch_size" not in explicit:
        batch = MIN_BATCH
        while batch * 2 <= min(cfg.batch_size, n_train // MIN_BATCHES_PER_EPOCH):
            batch *= 2
        if batch < cfg.batch_size:
            changes["batch_size"] = batch
    if "early_stopping_patience" not in explicit and cfg.early_stopping_patience is None:
        changes["early_stopping_patience"] = SMALL_CITY_PATIENCE
    sized = replace(cfg, **changes)
    patience = sized.early_stopping_patience
    stop = (
        f"early stopping after {patience} epochs without improvement"
        if patience
        else "no early stopping"
    )
    per_epoch = n_train // sized.batch_size
    what = f"batch {sized.batch_size} ({per_epoch} batches an epoch), up to {sized.epochs} epochs"
    what += f", {stop}"
    chosen = ", ".join(sorted(changes)) or "nothing"
    return sized, (
        f"{n_points:,} points (< {SMALL_CITY_POINTS:,}, a small city): {what}; "
        f"chosen from the size: {chosen}"
    )
