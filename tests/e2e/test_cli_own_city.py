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
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from calliper_pipeline.tracking.label_free import GATE
from calliper_pipeline.tracking.runs import TrackingConfig, default_tracking
from jobs.cli.parser import main
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


@dataclass
class Own:
    root: Path
    home: Path
    paths: list[str]
    statuses: list[int]
    out: dict[str, str]

    @property
    def tracking(self) -> TrackingConfig:
        return default_tracking(self.home / "mlflow")

    def run(self, *argv: str) -> tuple[int, str]:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            status = main([*argv, *self.paths])
        return status, buf.getvalue()


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
    home = root / "home"
    paths = ["--city", KEY, "--home", str(home), "--data-root", str(data), "--cities", str(toml)]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for name in list(os.environ):
            if name.startswith(("CALLIPER_", "MLFLOW_", "DAGSTER_")):
                mp.delenv(name)
        mp.setenv("CALLIPER_TEXT_ENCODER", "hashing")  # read by the Dagster resources
        own = Own(root, home, paths, [], {})
        # the second run retrains (nothing changed, so it would reuse v1) to meet the gate
        for i, extra in ((1, []), (2, ["--retrain", "--results", str(root / "results.md")])):
            status, out = own.run("run", "--tiny", *extra)
            own.statuses.append(status)
            own.out[f"run {i}"] = out
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
    client = own.tracking.client()
    aliases = {k: str(v) for k, v in client.get_registered_model(MODEL).aliases.items()}
    assert aliases == {"candidate": "2", "champion": "2"}
    v1, v2 = (client.get_model_version(MODEL, v) for v in ("1", "2"))
    for mv in (v1, v2):
        assert mv.tags["promotion.gate"] == GATE and mv.tags["promotion.decision"] == "promoted"
        assert mv.description.startswith(f"Champion gate: {GATE}. Promoted to 'champion'")
    assert "no incumbent" in v1.description
    # v2 was measured against v1 on v2's held-out POIs: the same settings, the same numbers
    assert v2.tags["heldout.incumbent_version"] == "1"
    assert "not worse than champion v1" in v2.description
    assert float(v2.tags["heldout.val_loss"]) == pytest.approx(
        float(v2.tags["heldout.incumbent_val_loss"]), rel=1e-5
    )


def test_embed_from_the_champion_keeps_the_input_columns(own: Own) -> None:
    lon, lat = CENTRE_WGS84
    points = pd.DataFrame(
        {
            "site": ["a", "b", "c"],
            "lon": [lon, lon + 0.01, lon - 0.02],
            "lat": [lat, lat, lat + 0.01],
            "note": ["x", "y", "z"],
        }
    )
    src, dst = own.root / "points.csv", own.root / "emb.parquet"
    points.to_csv(src, index=False)
    status, out = own.run("embed", "--model", f"models:/{MODEL}@champion", "--input", str(src),
                          "--output", str(dst))  # fmt: skip
    assert status == 0 and f"3 points embedded with models:/{MODEL}@champion" in out
    emb = pd.read_parquet(dst)
    assert list(emb.columns[:4]) == ["site", "lon", "lat", "note"]
    assert emb["lon"].tolist() == points["lon"].tolist()
    assert emb["lat"].tolist() == points["lat"].tolist()
    assert list(emb.columns[4:]) == [f"e{i:03d}" for i in range(512)]  # default preset
    assert emb.iloc[:, 4:].notna().all().all()


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
