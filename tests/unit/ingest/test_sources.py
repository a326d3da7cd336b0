"""A city with a second POI source: merged, de-duplicated, counted, hashed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from calliper_pipeline.cities.spec import load_city_file
from calliper_pipeline.config import DescriptionConfig
from calliper_pipeline.constants import COL_SOURCE, POI_COLUMNS
from calliper_pipeline.errors import ConfigError
from calliper_pipeline.hashing import file_hash
from calliper_pipeline.ingest.descriptions import describe_frame
from calliper_pipeline.ingest.filters import apply_filters
from calliper_pipeline.ingest.ingest import drop_near_duplicates, ingest_city, snapshot_hash
from calliper_pipeline.store import pois as store
from calliper_pipeline.store.db import connect
from tests.support import synthetic

N_POIS = 200


@pytest.fixture
def two_sources(tmp_path: Path):
    city = synthetic.make_synthetic_city(tmp_path, n_pois=N_POIS, evaluation=False)
    return synthetic.add_second_source(city, tmp_path)


def test_two_sources_ingest_with_source_column_dedupe_and_unique_ids(two_sources, tmp_path):
    city, expect = two_sources
    con = connect(tmp_path / "w.duckdb")
    report = ingest_city(con, city, tmp_path)
    pois = store.read_city_pois(con, city.key)
    assert tuple(pois.columns) == POI_COLUMNS
    by_source = pois[COL_SOURCE].value_counts().to_dict()
    assert by_source == {"primary": N_POIS, synthetic.SECOND_SOURCE: expect["new"]}
    assert pois["poi_id"].is_unique
    assert "extra:syn:00000" in set(pois["poi_id"]) and "syn:00000" in set(pois["poi_id"])
    extra = report.sources[synthetic.SECOND_SOURCE]
    assert extra["rows_duplicate"] == expect["near"] == report.rows_duplicate
    assert extra["filtered_by"] == {"score": expect["filtered"]}
    assert extra["quarantined_by"] == {"missing category": expect["quarantined"]}
    assert extra["rows_valid"] == expect["new"]
    assert report.rows_valid == N_POIS + expect["new"] == len(pois)
    quarantine = store.read_quarantine(con, city.key)
    assert quarantine[COL_SOURCE].tolist() == [synthetic.SECOND_SOURCE]
    log = store.latest_ingest(con, city.key)
    assert log is not None and log["rows_duplicate"] == expect["near"]
    assert log["sources"][synthetic.SECOND_SOURCE]["rows_duplicate"] == expect["near"]
    texts = pois.loc[pois[COL_SOURCE] == synthetic.SECOND_SOURCE, "description"]
    assert set(texts) == {"A place of bakery, a type of extra place"}
    # re-describing stored rows (what training does) gives the same texts
    again = describe_frame(pois, city, DescriptionConfig())
    assert again.tolist() == pois["description"].tolist()


def test_city_file_with_sources_round_trips(two_sources, tmp_path):
    city, _ = two_sources
    loaded = load_city_file(tmp_path / f"{city.key}.toml")
    assert loaded.sources == city.sources
    assert [name for name, _ in loaded.all_sources()] == ["primary", synthetic.SECOND_SOURCE]


def test_snapshot_hash_covers_every_source(two_sources, tmp_path):
    city, _ = two_sources
    primary_only = replace(city, sources=())
    assert snapshot_hash(primary_only, tmp_path) == file_hash(Path(city.snapshot.path))
    before = snapshot_hash(city, tmp_path)
    assert before != snapshot_hash(primary_only, tmp_path)
    extra = Path(city.sources[0].path)
    df = pd.read_csv(extra)
    df.loc[0, "title"] = "Renamed"
    df.to_csv(extra, index=False)
    assert snapshot_hash(city, tmp_path) != before
    extra.unlink()
    with pytest.raises(FileNotFoundError):
        snapshot_hash(city, tmp_path)


def test_no_dedupe_distance_keeps_near_points(two_sources, tmp_path):
    city, expect = two_sources
    keep_all = replace(city, sources=(replace(city.sources[0], dedupe_within_m=None),))
    report = ingest_city(connect(tmp_path / "w.duckdb"), keep_all, tmp_path)
    assert report.rows_duplicate == 0
    assert report.sources[synthetic.SECOND_SOURCE]["rows_valid"] == expect["near"] + expect["new"]


def test_drop_near_duplicates_is_inclusive_of_the_distance():
    pois = pd.DataFrame({"x_m": [0.0, 25.0, 25.1], "y_m": [0.0, 0.0, 0.0]})
    kept, n = drop_near_duplicates(pois, np.zeros((1, 2)), 25.0)
    assert n == 2 and kept["x_m"].tolist() == [25.1]


def test_range_filters_and_exceptions():
    raw = pd.DataFrame(
        {"d": ["100", "3000", "", "6000", "1"], "la": ["501", "501", "501", "508", "502"]}
    )
    rule = {"d": {"max": 2000, "except_when": {"la": 508}}, "la": {"not_in": ["502"]}}
    kept, counts = apply_filters(raw, rule)
    assert kept.index.tolist() == [0, 3] and counts == {"d": 2, "la": 1}
    kept, counts = apply_filters(raw, {"la": {"in": ["501", 508]}, "d": {"min": 200}})
    assert kept.index.tolist() == [1, 3] and counts == {"la": 1, "d": 2}


def test_bad_source_configuration_is_refused(two_sources, tmp_path):
    city, _ = two_sources
    path = tmp_path / f"{city.key}.toml"
    text = path.read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('name = "extra"', 'name = "primary"'))
    with pytest.raises(ConfigError, match="unique"):
        load_city_file(bad)
    bad.write_text(text.replace("{ min = 0.5 }", "{ above = 0.5 }"))
    with pytest.raises(ConfigError, match="above"):
        load_city_file(bad)
