"""Bring your own city: a JSON-lines POI file with only a bounding box (no ids, no labels)
goes through ``calliper run``, gets ``@champion`` through the label-free gate, and ``calliper
embed`` from that champion keeps the input's columns.

The module fixture writes the city as a user would (the README's JSON-lines example: a
``.jsonl.gz`` file and a hand-written city TOML), then runs ``calliper run --tiny`` twice on one
CALLIPER_HOME: v1 (no champion yet) and v2 (the same settings, so the same model: measured
against v1 on its held-out POIs and not worse), the second writing the results file.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator

import pandas as pd
import pytest

from calliper_pipeline.tracking.label_free import GATE
from jobs.cli.parser import main
from tests.support.own_city import (
    Own,
    check_embed_keeps_input_columns,
    check_label_free_champion,
    own_city_runs,
)
from tests.support.synthetic import (
    ALL_CATEGORIES,
    CENTRE_WGS84,
    bounds_wgs84,
    make_synthetic_city,
)

pytestmark = pytest.mark.slow  # two tiny city_refresh runs: ~60 s on 2 cores

KEY = "town"
MODEL = f"calliper_{KEY}"
N_POIS = 500
CITY_TOML = """\
key = "town"
name = "Town"
bounds_wgs84 = [{bounds}]  # min_lon, min_lat, max_lon, max_lat (degrees)

[snapshot]
path = "town/pois.jsonl.gz"  # relative to the data root; one JSON object per line, gzipped

[snapshot.columns]
name = "name"
category = "category"
group = "group"
lon = "lon"
lat = "lat"
"""


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Own]:
    root = tmp_path_factory.mktemp("own_city")
    data = root / "data"
    make_synthetic_city(root / "gen", n_pois=N_POIS, seed=4, evaluation=False)
    # what a user brings: no id column, an extra column, JSON lines, gzip
    pois = pd.read_csv(root / "gen" / "pois.csv").drop(columns=["poi_id", "is_duplicate"])
    (data / KEY).mkdir(parents=True)
    pois.assign(opening_hours="9-17").to_json(
        data / KEY / "pois.jsonl.gz", orient="records", lines=True
    )
    toml = root / "town.toml"
    toml.write_text(CITY_TOML.format(bounds=", ".join(map(str, bounds_wgs84()))))
    with own_city_runs(root, KEY, data, toml) as own:
        yield own


def test_both_runs_succeed_and_register(own: Own) -> None:
    assert own.statuses == [0, 0]
    client = own.tracking.client()
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{MODEL}'"))
    assert versions == [1, 2]
    # a small city: what the size chose (the tiny run set batch and epochs) is recorded
    run = client.get_run(str(client.get_model_version(MODEL, "1").run_id))
    assert "a small city" in run.data.tags["train.sizing"]
    assert "batch 256" in run.data.tags["train.sizing"]  # --tiny's, kept as set


def test_the_label_free_gate_gives_the_city_a_champion(own: Own) -> None:
    check_label_free_champion(own, MODEL)


def test_embed_from_the_champion_keeps_the_input_columns(own: Own) -> None:
    check_embed_keeps_input_columns(own, MODEL, *CENTRE_WGS84)


def test_results_show_the_citys_own_figures_and_nothing_borrowed(own: Own) -> None:
    text = (own.root / "results.md").read_text(encoding="utf-8")
    assert "<!-- results:town-run:start -->" in text
    assert "| encoder | POIs | categories | groups | held-out POIs | held-out val loss |" in text
    n_categories = len({c for c, _ in ALL_CATEGORIES})
    n_groups = len({g for _, g in ALL_CATEGORIES if g})
    assert f"| ours: CaLLiPer | {N_POIS} | {n_categories} | {n_groups} |" in text
    assert "champion gate" in text and f"{GATE}: promoted" in text
    lines = [line for line in text.splitlines() if line.startswith("town-run-heldout-mlp:")]
    assert len(lines) == 1 and "nan" not in lines[0], lines
    assert "paper:" not in text and "London" not in text and "LUC" not in text


def test_maps_and_retrieve_use_the_citys_own_queries_and_cells(own: Own) -> None:
    """The maps' queries come from the city's most common categories; ``retrieve`` without
    ``--city`` scores the model's own city (not London)."""
    png = own.root / "query.png"
    no_city = [a for a in own.paths if a not in ("--city", KEY)]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        status = main(["retrieve", "a place of cafe, a type of eating and drinking",
                       "--model", f"models:/{MODEL}@champion", "--output", str(png),
                       "--top-k", "3", *no_city])  # fmt: skip
    assert status == 0, buf.getvalue()
    top = pd.read_csv(png.with_suffix(".csv"))
    assert len(top) == 3 and png.read_bytes()[:4] == b"\x89PNG"
    # the town's cells (around lon 10, lat 50), not London's
    assert top["lon"].between(9.8, 10.2).all() and top["lat"].between(49.9, 50.1).all()
    client = own.tracking.client()
    run_id = client.get_model_version(MODEL, "2").run_id
    maps = [a.path for a in client.list_artifacts(str(run_id), "maps")]
    heatmaps = [p for p in maps if p.startswith("maps/retrieval_") and p.endswith(".png")]
    assert len(heatmaps) == 3, maps
    assert not any("pubs" in p for p in heatmaps)  # London's queries are London's
