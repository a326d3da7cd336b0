"""ingest.quality: the drift measure between two category mixes; degenerate-city warnings."""

from __future__ import annotations

import pandas as pd
import pytest

from calliper_pipeline.ingest.quality import (
    MIN_DISTINCT_PLACES,
    degenerate_city_warnings,
    stored_city_warnings,
    total_variation,
)
from calliper_pipeline.store.db import connect


def test_total_variation_distance() -> None:
    p = pd.Series({"a": 0.5, "b": 0.5})
    assert total_variation(p, p) == 0.0
    assert total_variation(p, pd.Series({"c": 1.0})) == pytest.approx(1.0)
    assert total_variation(p, pd.Series({"a": 0.6, "b": 0.3, "c": 0.1})) == pytest.approx(0.2)


def _pois(n: int, n_categories: int = 3, n_places: int | None = None) -> pd.DataFrame:
    places = n if n_places is None else n_places
    return pd.DataFrame(
        {
            "category": [f"c{i % n_categories}" for i in range(n)],
            "x_m": [float(i % places) * 10.0 for i in range(n)],
            "y_m": [0.3 * (i % 2) for i in range(n)],  # 0.3 m apart: the same place
        }
    )


def test_degenerate_city_warnings_name_each_problem() -> None:
    assert degenerate_city_warnings(_pois(1024)) == []
    assert degenerate_city_warnings(_pois(1023)) == [
        "1,023 POIs, fewer than one training batch (1,024)"
    ]
    assert degenerate_city_warnings(_pois(200), batch_size=128) == []
    assert degenerate_city_warnings(_pois(2000, n_categories=1)) == [
        "one category only ('c0'): nothing to contrast"
    ]
    few = MIN_DISTINCT_PLACES - 1
    assert degenerate_city_warnings(_pois(2000, n_places=few)) == [
        f"all 2,000 POIs lie at {few} distinct place(s) (to the metre)"
    ]
    assert degenerate_city_warnings(_pois(2000, n_places=MIN_DISTINCT_PLACES)) == []
    assert degenerate_city_warnings(_pois(0)) == []


def test_stored_city_warnings_read_the_store(tmp_path) -> None:
    con = connect(tmp_path / "db.duckdb")
    assert stored_city_warnings(con, "nowhere") == ["no POIs stored"]
