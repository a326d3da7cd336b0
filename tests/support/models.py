"""A tiny untrained CaLLiPer model for registry, serving and packaging tests."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from calliper_pipeline.config import EncoderConfig
from calliper_pipeline.model.calliper import CalliperModel, ModelSpec

if TYPE_CHECKING:
    from calliper_pipeline.tracking.registry import RegisteredVersion
    from calliper_pipeline.tracking.runs import TrackingConfig

# London-ish bounds and centre in EPSG:27700 metres
TINY_BOUNDS_M = (520_000.0, 170_000.0, 540_000.0, 190_000.0)


def tiny_model(seed: int, city: str) -> CalliperModel:
    """A small seeded model (16 wide, 1 block, 4 scales) of ``city``, in eval mode."""
    torch.manual_seed(seed)
    spec = ModelSpec(
        encoder=EncoderConfig(hidden_dim=16, num_layers=1, frequency_num=4),
        text_dim=384,
        centre_m=(530_000.0, 180_000.0),
        metric_epsg=27700,
        text_encoder_id="x",
        city=city,
        bounds_m=TINY_BOUNDS_M,
    )
    return CalliperModel(spec).eval()


def register_champion(
    home: Path, city: str, seed: int = 0, metrics: dict[str, float] | None = None
) -> tuple[TrackingConfig, RegisteredVersion]:
    """Register ``tiny_model(seed, city)`` in a SQLite store under ``home`` (as ``make run``
    lays it out: ``home/mlflow/mlflow.db``), log ``metrics`` on its run and make it champion."""
    from calliper_pipeline.tracking.registry import log_and_register_model, promote_if_better
    from calliper_pipeline.tracking.runs import default_tracking, log_metrics, start_training_run

    tracking = default_tracking(home / "mlflow")
    with start_training_run(tracking, city, "c" * 64, None, "test", {}) as handle:
        if metrics:
            log_metrics(handle, metrics)
        version = log_and_register_model(handle, tiny_model(seed, city), city)
    promote_if_better(tracking, city, version.version, 0.5, "luc.mlp.f1", True, 0.0, True)
    return tracking, version
