"""The ingest step skips a re-ingest of the same inputs while the store still holds it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from calliper_pipeline.config import DescriptionConfig
from calliper_pipeline.steps.ingest import ingest, ingest_profiled, load_pois
from calliper_pipeline.store import pois as store
from calliper_pipeline.store.db import connect
from tests.support.synthetic import make_synthetic_city

N_POIS = 150


def test_same_inputs_reuse_the_stored_ingest_and_a_change_is_a_miss(tmp_path: Path) -> None:
    spec = make_synthetic_city(tmp_path / "city", n_pois=N_POIS, seed=3, evaluation=False)
    data, cache_root = tmp_path / "data", tmp_path / "cache"
    with connect(tmp_path / "warehouse.duckdb") as con:
        first = ingest_profiled(con, spec, data, cache_root=cache_root)
        first_id = store.latest_ingest(con, spec.key)["ingest_id"]
        first_texts = load_pois(con, spec)["description"].tolist()
        second = ingest_profiled(con, spec, data, cache_root=cache_root)
        assert (first.reused, second.reused) == (False, True)
        assert second.cache_key == first.cache_key and "sources" in second.cache_covers
        assert store.latest_ingest(con, spec.key)["ingest_id"] == first_id  # nothing rewritten
        assert second.report == first.report and second.report.rows_valid == N_POIS
        pd.testing.assert_series_equal(second.category_mix, first.category_mix)
        pd.testing.assert_frame_equal(second.sample, first.sample)

        # another ingest in between (other settings, no cache): the entry no longer describes
        # the stored rows, so the same inputs are ingested again
        ingest(con, spec, data, DescriptionConfig(variant="calliper_plus"))
        assert load_pois(con, spec)["description"].tolist() != first_texts
        third = ingest_profiled(con, spec, data, cache_root=cache_root)
        assert third.reused is False and third.cache_key == first.cache_key
        assert store.latest_ingest(con, spec.key)["ingest_id"] > first_id
        assert load_pois(con, spec)["description"].tolist() == first_texts

        # a changed snapshot file is a new key
        snapshot = spec.snapshot_path(data)
        df = pd.read_csv(snapshot, dtype={"poi_id": str})
        df.loc[0, "category"] = "Cinema"
        df.to_csv(snapshot, index=False)
        fourth = ingest_profiled(con, spec, data, cache_root=cache_root)
        assert fourth.reused is False and fourth.cache_key != first.cache_key
        assert "Cinema" in set(load_pois(con, spec)["category"])

        # a changed city file (here its description template) too
        other = replace(spec, description_template="Somewhere with {category}")
        fifth = ingest_profiled(con, other, data, cache_root=cache_root)
        assert fifth.reused is False and fifth.cache_key != fourth.cache_key
        assert load_pois(con, other)["description"].str.startswith("Somewhere with").all()


def test_without_a_cache_root_every_call_ingests(tmp_path: Path) -> None:
    spec = make_synthetic_city(tmp_path / "city", n_pois=60, seed=4, evaluation=False)
    with connect(tmp_path / "warehouse.duckdb") as con:
        ids = []
        for _ in range(2):
            out = ingest_profiled(con, spec, tmp_path / "data")
            assert out.reused is False and out.cache_key == ""
            ids.append(store.latest_ingest(con, spec.key)["ingest_id"])
    assert ids[1] == ids[0] + 1


def test_a_damaged_entry_is_rebuilt(tmp_path: Path) -> None:
    spec = make_synthetic_city(tmp_path / "city", n_pois=60, seed=4, evaluation=False)
    cache_root = tmp_path / "cache"
    with connect(tmp_path / "warehouse.duckdb") as con:
        first = ingest_profiled(con, spec, tmp_path / "data", cache_root=cache_root)
        (cache_root / "ingest" / first.cache_key / "entry.json").unlink()
        again = ingest_profiled(con, spec, tmp_path / "data", cache_root=cache_root)
    assert again.reused is False and again.report.rows_valid == 60
