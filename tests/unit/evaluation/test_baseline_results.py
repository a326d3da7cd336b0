"""evaluation.baselines.baseline_results: the four baselines, both protocols, one tidy table."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from calliper_pipeline.config import EncoderConfig, ProbeConfig
from calliper_pipeline.evaluation import baselines
from calliper_pipeline.evaluation.data import LabelledPoints


@dataclass
class _Sets:
    landuse: LabelledPoints | None
    socioeconomic: LabelledPoints | None


def _luc(n: int = 300) -> LabelledPoints:
    rng = np.random.default_rng(0)
    x = 530_000.0 + rng.uniform(-5_000, 5_000, n)
    y = 180_000.0 + rng.uniform(-5_000, 5_000, n)
    labels = (x > 530_000).astype(np.int64)
    return LabelledPoints(np.arange(n), x, y, x, y, labels, ("a", "b"), "luc")


def test_baseline_results_is_one_tidy_table_with_both_protocols() -> None:
    pytest.importorskip("calliper_pipeline.model.encodings")
    rng = np.random.default_rng(1)
    pois = pd.DataFrame(
        {
            "x_m": 530_000.0 + rng.uniform(-5_000, 5_000, 200),
            "y_m": 180_000.0 + rng.uniform(-5_000, 5_000, 200),
            "category": rng.choice(["pub", "school"], 200),
        }
    )
    enc = EncoderConfig(hidden_dim=16, num_layers=1, frequency_num=4)
    cfg = ProbeConfig(seeds=(1,), max_epochs=2, patience=1, probes=("linear",))
    lines: list[str] = []
    frame = baselines.baseline_results(
        _Sets(_luc(), None), pois, enc, cfg, (530_000.0, 180_000.0), log=lines.append
    )
    names = [
        baselines.RAW_COORDINATES,
        baselines.POSITIONAL_ENCODING,
        baselines.UNTRAINED_ENCODER,
        baselines.POI_COUNTS,
    ]
    assert list(dict.fromkeys(frame["encoder"])) == names
    assert set(frame["protocol"]) == {"random", "blocks"}
    assert len(frame) == 4 * 2 * 4  # encoders x protocols x LUC metrics
    assert len(lines) == 4
    with pytest.raises(ValueError):
        baselines.baseline_results(_Sets(None, None), pois, enc, cfg, (0.0, 0.0))
