"""ingest.quality: the drift measure between two category mixes."""

from __future__ import annotations

import pandas as pd
import pytest

from calliper_pipeline.ingest.quality import total_variation


def test_total_variation_distance() -> None:
    p = pd.Series({"a": 0.5, "b": 0.5})
    assert total_variation(p, p) == 0.0
    assert total_variation(p, pd.Series({"c": 1.0})) == pytest.approx(1.0)
    assert total_variation(p, pd.Series({"a": 0.6, "b": 0.3, "c": 0.1})) == pytest.approx(0.2)
