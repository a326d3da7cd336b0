"""The scale benchmark's synthetic city (deterministic, valid, clustered, Zipf categories) and
its doc writer (replaces only its own section of docs/scale.md)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from bench.bench_scale_1m import replace_section, tree_rss_bytes
from bench.synthetic_city import category_table, generate_pois, write_city
from calliper_pipeline.cities.spec import get_city, load_city_registry
from calliper_pipeline.steps.ingest import ingest
from calliper_pipeline.store.city_store import for_home


def test_categories_are_distinct_and_grouped() -> None:
    table = category_table(300, 20)
    assert table["category"].is_unique and table["group"].nunique() == 20
    assert table.iloc[0].tolist() == ["Independent restaurant", "Eating and drinking"]
    assert (table.groupby("group").size() == 15).all()


def test_pois_are_deterministic_clustered_and_zipf() -> None:
    a, b = generate_pois(20_000, seed=3), generate_pois(20_000, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert not generate_pois(20_000, seed=4).equals(a)
    assert a["poi_id"].is_unique and list(a.columns) == [
        "poi_id", "name", "category", "group", "lon", "lat",
    ]  # fmt: skip
    groups = dict(category_table(300, 20).itertuples(index=False))
    assert (a["group"] == a["category"].map(groups)).all()
    counts = a["category"].value_counts()
    assert counts.iloc[0] > 5 * counts.median()  # heavy head of a Zipf law
    assert 0.55 < a["name"].notna().mean() < 0.65
    # clustered: a 1 km grid's busiest tenth of cells holds far more than a tenth of POIs
    cell = (np.floor(a["lon"] / 0.014) * 1000 + np.floor(a["lat"] / 0.009)).value_counts()
    top = cell.iloc[: max(1, len(cell) // 10)].sum() / len(a)
    assert top > 0.4, top


def test_the_city_file_ingests_every_poi(tmp_path: Path) -> None:
    toml = write_city(tmp_path / "data", 3_000, seed=1, key="scale_test")
    city = get_city("scale_test", load_city_registry([toml]))
    assert city.evaluation is None and city.bounds_wgs84 is not None
    with for_home(tmp_path / "home").connect(city.key) as con:
        report = ingest(con, city, tmp_path / "data")
    assert report.rows_valid == 3_000 and report.rows_quarantined == 0
    assert report.metric_epsg == 32632


def test_replace_section_keeps_the_other_sections(tmp_path: Path) -> None:
    doc = tmp_path / "scale.md"
    doc.write_text("# T\n\nintro\n\n## One\n\nold\n\n## Many machines\n\nkept\n")
    replace_section(doc, "One", "## One\n\nnew\n")
    assert doc.read_text() == "# T\n\nintro\n\n## One\n\nnew\n\n## Many machines\n\nkept\n"
    replace_section(doc, "Two", "## Two\n\nadded\n")
    assert doc.read_text().endswith("## Many machines\n\nkept\n\n## Two\n\nadded\n")


def test_tree_rss_counts_this_process() -> None:
    assert tree_rss_bytes(os.getpid()) > 10 * 2**20
    assert tree_rss_bytes(2**22 + 12345) == 0  # no such process
