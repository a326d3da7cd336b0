"""A tiny untrained CaLLiPer model for registry, serving and packaging tests."""

from __future__ import annotations

import torch

from calliper_pipeline.config import EncoderConfig
from calliper_pipeline.model.calliper import CalliperModel, ModelSpec

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
