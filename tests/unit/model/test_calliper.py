"""model.calliper: coordinates are centred in float64 before the float32 cast."""

from __future__ import annotations

import numpy as np

from calliper_pipeline.config import EncoderConfig
from calliper_pipeline.model.calliper import ModelSpec, prepare_coords


def test_prepare_coords_centres_in_float64():
    spec = ModelSpec(
        encoder=EncoderConfig(hidden_dim=64, num_layers=2, frequency_num=8, min_lambda_m=50.0),
        text_dim=16,
        centre_m=(501_500.0, 181_500.0),
        metric_epsg=27700,
        text_encoder_id="toy",
    )
    c = prepare_coords(spec, "metric", np.array([501_500.25]), np.array([181_499.75]))
    assert c.dtype == np.float32 and c.tolist() == [[0.25, -0.25]]
