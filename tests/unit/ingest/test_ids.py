"""Derived POI ids (no ``poi_id`` column) are stable across snapshots of the same city."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from calliper_pipeline.cities.spec import CitySpec, ColumnMap, SnapshotSpec
from calliper_pipeline.config import DescriptionConfig
from calliper_pipeline.ingest.ids import stable_id
from calliper_pipeline.ingest.readers import read_snapshot
from calliper_pipeline.ingest.validate import normalise_pois
from tests.support import synthetic

NO_ID = ColumnMap(name="name", category="category", group="group", lon="lon", lat="lat")


def _ids(frame: pd.DataFrame, tmp: Path, name: str) -> dict[tuple[float, float], str]:
    path = tmp / f"{name}.jsonl"
    frame.to_json(path, orient="records", lines=True)
    city = CitySpec(
        key="town",
        name="Town",
        snapshot=SnapshotSpec(path=str(path), columns=NO_ID, name="osm"),
        bounds_wgs84=synthetic.bounds_wgs84(),
    )
    raw = read_snapshot(path, city.snapshot)
    pois = normalise_pois(raw, city, tmp, DescriptionConfig(), "h").pois
    assert pois["poi_id"].is_unique
    where = zip(pois["lon"].round(7), pois["lat"].round(7), strict=True)
    return dict(zip(where, pois["poi_id"], strict=True))


def test_the_same_poi_keeps_its_id_across_snapshots(tmp_path: Path) -> None:
    synthetic.make_synthetic_city(tmp_path, n_pois=200, seed=5, evaluation=False)
    first = pd.read_csv(tmp_path / "pois.csv").drop(columns=["poi_id", "is_duplicate"])
    added = pd.DataFrame(
        [{"name": "New bakery", "category": "Bakery", "group": "Retail", "lon": 10.01, "lat": 50.0}]
    )
    # the next snapshot: rows shuffled, one POI added at the top
    second = pd.concat([added, first.sample(frac=1.0, random_state=1)], ignore_index=True)
    ids_1 = _ids(first, tmp_path, "first")
    ids_2 = _ids(second, tmp_path, "second")
    assert len(ids_1) == 200 and len(ids_2) == 201
    assert all(ids_2[where] == poi_id for where, poi_id in ids_1.items())
    assert ids_2[(10.01, 50.0)] not in ids_1.values()


def test_the_formula_is_the_documented_one() -> None:
    text = "osm\x1fRose\x1fpub\x1f-0.12346\x1f51.50000"
    assert (
        stable_id("osm", " Rose ", "pub", -0.123456, 51.5)
        == (hashlib.sha256(text.encode()).hexdigest()[:16])
    )
    # a move under ~1 m keeps the id; a rename or another category does not
    assert stable_id("osm", "Rose", "pub", -0.123457, 51.5) == stable_id(
        "osm", "Rose", "pub", -0.123456, 51.5
    )
    assert stable_id("osm", "Rose", "bar", -0.123456, 51.5) != stable_id(
        "osm", "Rose", "pub", -0.123456, 51.5
    )
    assert stable_id("osm", None, "pub", 0.0, 0.0) == stable_id("osm", "", "pub", 0.0, 0.0)
