"""A city file is checked whole when it is loaded: unknown keys, unknown formats, column maps
and ``bounds_wgs84`` range and order, each refused in one line naming the file and the field."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from calliper_pipeline.cities.checks import (
    SNAPSHOT_FORMAT_ALIASES,
    SNAPSHOT_FORMAT_NAMES,
    check_bounds_hold_points,
)
from calliper_pipeline.cities.spec import SnapshotSpec, load_city_file
from calliper_pipeline.errors import ConfigError
from calliper_pipeline.ingest.readers import snapshot_format

GOOD = """\
key = "town"
name = "Town"
bounds_wgs84 = [9.88, 49.92, 10.12, 50.08]

[snapshot]
path = "pois.jsonl"
format = "jsonl"

[snapshot.columns]
category = "category"
lon = "lon"
lat = "lat"

[[sources]]
name = "extra"
path = "extra.csv"

[sources.columns]
category = "kind"
x = "e"
y = "n"
source_epsg = 32632

[evaluation]
landuse_path = "landuse.geojson"
"""


def _load(tmp_path: Path, text: str) -> str:
    path = tmp_path / "town.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_city_file(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    return message


def test_a_good_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "town.toml"
    path.write_text(GOOD)
    city = load_city_file(path)
    assert city.snapshot.format == "jsonl" and city.bounds_wgs84 == (9.88, 49.92, 10.12, 50.08)
    assert city.sources[0].columns.source_epsg == 32632


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ('name = "Town"', 'name = "Town"\nbounds = [1, 2, 3, 4]', "bounds: unknown key"),
        ('format = "jsonl"', 'format = "jsonl"\nfilter = {}', "snapshot.filter: unknown key"),
        ('lat = "lat"\n', 'lat = "lat"\nlatitude = "y"\n', "snapshot.columns.latitude"),
        ('category = "kind"', 'category = "kind"\nid = "i"', "sources[0].columns.id"),
        ('landuse_path = "l', 'land_use_path = "l', "evaluation.land_use_path"),
        ('format = "jsonl"', 'format = "xlsx"', "snapshot.format: unknown format 'xlsx'"),
        ('format = "jsonl"', 'format = "json"', "snapshot.format: 'json' is ambiguous"),
        ('category = "category"\n', "", "snapshot.columns.category: required"),
        ('lat = "lat"\n', "", "snapshot.columns.lat: required with lon"),
        ("source_epsg = 32632", 'source_epsg = "utm"', "sources[0].columns.source_epsg"),
        ('path = "pois.jsonl"\n', "", "snapshot.path: required"),
    ],
)
def test_each_mistake_names_its_field(tmp_path: Path, old: str, new: str, field: str) -> None:
    assert old in GOOD
    assert field in _load(tmp_path, GOOD.replace(old, new, 1))


def test_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    text = GOOD.replace('name = "Town"', 'name = "Town"\nmetric_espg = 32632')
    assert "did you mean 'metric_epsg'" in _load(tmp_path, text)


@pytest.mark.parametrize(
    ("bounds", "says"),
    [
        ("[49.92, 9.88, 50.08, 10.12, 1]", "four finite numbers"),
        ('["a", 49.92, 10.12, 50.08]', "four finite numbers"),
        ("[35.5, 139.5, 35.9, 139.9]", "lat/lon look swapped"),  # Tokyo written lat first
        ("[10.12, 49.92, 9.88, 50.08]", "min_lon 10.12 is not below max_lon 9.88"),
        ("[9.88, 50.08, 10.12, 49.92]", "min_lat 50.08 is not below max_lat 49.92"),
        ("[190.0, 49.92, 191.0, 50.08]", "longitude 190 / 191 outside [-180, 180]"),
    ],
)
def test_bounds_range_and_order(tmp_path: Path, bounds: str, says: str) -> None:
    text = GOOD.replace("[9.88, 49.92, 10.12, 50.08]", bounds)
    message = _load(tmp_path, text)
    assert "bounds_wgs84" in message and says in message
    assert "[min_lon, min_lat, max_lon, max_lat]" in message


def test_not_toml_is_a_config_error(tmp_path: Path) -> None:
    assert "not a valid TOML file" in _load(tmp_path, "key = \n")


def test_bounds_swapped_against_the_pois() -> None:
    lon = 10.0 + np.linspace(-0.1, 0.1, 50)
    lat = 50.0 + np.linspace(-0.05, 0.05, 50)
    check_bounds_hold_points((9.88, 49.92, 10.12, 50.08), lon, lat, "town")  # right: fine
    with pytest.raises(ConfigError, match=r"lat and lon swapped .* \[9\.88, 49\.92"):
        check_bounds_hold_points((49.92, 9.88, 50.08, 10.12), lon, lat, "town")
    # a box far away that a swap does not explain is left to per-row quarantine
    check_bounds_hold_points((20.0, 40.0, 21.0, 41.0), lon, lat, "town")


@pytest.mark.parametrize("name", [*SNAPSHOT_FORMAT_NAMES, *SNAPSHOT_FORMAT_ALIASES])
def test_every_format_the_file_may_name_is_readable(name: str, tmp_path: Path) -> None:
    spec = SnapshotSpec(path="p", columns=None, format=name)  # type: ignore[arg-type]
    expected = SNAPSHOT_FORMAT_ALIASES.get(name, name)
    path = tmp_path / "p.bin"
    if expected == "parquet":  # snapshot_format looks for GeoParquet metadata in Parquet files
        import pandas as pd

        pd.DataFrame({"a": [1]}).to_parquet(path)
    assert snapshot_format(path, spec) == expected


def test_retrieval_queries(tmp_path: Path) -> None:
    text = GOOD.replace('name = "Town"', 'name = "Town"\nretrieval_queries = [" a pub ", "x"]')
    path = tmp_path / "town.toml"
    path.write_text(text)
    assert load_city_file(path).retrieval_queries == ("a pub", "x")
    bad = GOOD.replace('name = "Town"', 'name = "Town"\nretrieval_queries = "a pub"')
    assert "retrieval_queries: expected a list of non-empty texts" in _load(tmp_path, bad)


def test_city_queries_default_to_the_most_common_categories(tmp_path: Path) -> None:
    import pandas as pd

    from calliper_pipeline.steps.assess import city_queries

    path = tmp_path / "town.toml"
    path.write_text(GOOD)
    city = load_city_file(path)
    cats = ["Pub"] * 4 + ["Cafe"] * 3 + ["Post box"] * 2 + ["Bench"]
    groups = ["Food", "Food", "Food", "Bar", "Food", "Food", "Food", None, None, "Street"]
    pois = pd.DataFrame({"category": cats, "category_group": groups})
    assert city_queries(city, pois) == [  # the group most of the category's POIs have
        "A place of pub, a type of food",
        "A place of cafe, a type of food",
        "A place of post box",  # no group: the group clause is dropped
    ]
    named = replace(city, retrieval_queries=("a place of pubs",))
    assert city_queries(named, pois) == ["a place of pubs"]
