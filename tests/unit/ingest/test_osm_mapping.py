"""The OSM tag -> (category, group) mapping: the shipped default, priority, overrides, excludes;
and the ``[snapshot.osm]`` table's checks in a city file."""

from __future__ import annotations

from pathlib import Path

import pytest

from calliper_pipeline.cities.spec import OSM_COLUMNS, load_city_file
from calliper_pipeline.errors import ConfigError
from calliper_pipeline.ingest.osm_mapping import (
    DEFAULT_TAGS_FILE,
    REASON_EXCLUDED_TAG,
    REASON_NO_POI_TAG,
    OsmMapping,
    humanise,
    source_mapping,
)

DEFAULT = OsmMapping.default()


@pytest.mark.parametrize(
    ("tags", "category", "group", "tag"),
    [
        ({"amenity": "restaurant"}, "restaurant", "eating and drinking", "amenity=restaurant"),
        ({"amenity": "fast_food"}, "fast food", "eating and drinking", "amenity=fast_food"),
        ({"amenity": "atm"}, "cash machine", "finance", "amenity=atm"),
        ({"amenity": "townhall"}, "townhall", "public and community services", "amenity=townhall"),
        ({"shop": "shoes"}, "shoes", "retail", "shop=shoes"),
        ({"shop": "convenience"}, "convenience", "food shops", "shop=convenience"),
        ({"shop": "yes"}, "shop", "retail", "shop=yes"),
        ({"shop": "doityourself"}, "DIY store", "retail", "shop=doityourself"),
        ({"leisure": "fitness_centre"}, "fitness centre", "sport and leisure", None),
        ({"tourism": "hotel"}, "hotel", "tourism and accommodation", "tourism=hotel"),
        ({"railway": "station"}, "station", "transport", "railway=station"),
        ({"amenity": "cafe;bakery"}, "cafe", "eating and drinking", "amenity=cafe"),
        ({"office": "it", "name": "X"}, "it", "offices", "office=it"),
    ],
)
def test_known_tags_give_known_category_and_group(
    tags: dict[str, str], category: str, group: str, tag: str | None
) -> None:
    match = DEFAULT.classify(tags)
    assert (match.category, match.group, match.reason) == (category, group, None)
    if tag is not None:
        assert match.tag == tag


def test_keys_are_read_in_priority_order() -> None:
    # amenity before shop before tourism: a pub in a hotel is a pub
    match = DEFAULT.classify({"tourism": "hotel", "amenity": "pub", "shop": "wine"})
    assert (match.category, match.tag) == ("pub", "amenity=pub")
    assert DEFAULT.classify({"shop": "wine", "tourism": "hotel"}).category == "wine"
    # an excluded tag gives way to the next key
    match = DEFAULT.classify({"amenity": "bench", "tourism": "viewpoint"})
    assert (match.category, match.group) == ("viewpoint", "tourism and accommodation")


def test_key_value_entries_and_no_values_are_not_pois() -> None:
    assert DEFAULT.classify({"railway": "rail"}).reason == REASON_NO_POI_TAG
    assert DEFAULT.classify({"shop": "vacant"}).reason == REASON_EXCLUDED_TAG  # excluded by default
    assert DEFAULT.classify({"shop": "no", "name": "x"}).reason == REASON_NO_POI_TAG
    assert DEFAULT.classify({"amenity": "no", "name": "x"}).reason == REASON_NO_POI_TAG
    assert DEFAULT.classify({"building": "yes", "name": "Tower"}).reason == REASON_NO_POI_TAG
    assert DEFAULT.classify({}).reason == REASON_NO_POI_TAG


def test_street_furniture_is_excluded_by_default_and_named() -> None:
    for tags in ({"amenity": "bench"}, {"amenity": "waste_basket"}, {"amenity": "bicycle_parking"}):
        match = DEFAULT.classify(tags)
        assert match.reason == REASON_EXCLUDED_TAG and match.category is None
        assert match.tag == f"amenity={tags['amenity']}"
    # the first excluded tag is the one reported
    assert DEFAULT.classify({"amenity": "bench", "leisure": "picnic_table"}).tag == "amenity=bench"


def test_overrides_replace_keys_and_excludes_and_add_categories_and_groups() -> None:
    mapping = source_mapping(
        {
            "keys": ["shop", "amenity=pub", "amenity=bench"],
            "exclude": ["shop=vacant"],
            "categories": {"amenity=pub": ["pubs", "eating and drinking"]},
            "groups": {"shop": "shops", "shop=bakery": "food"},
        }
    )
    assert mapping.classify({"amenity": "pub", "shop": "x"}).category == "x"  # shop first now
    pub = mapping.classify({"amenity": "pub"})
    assert (pub.category, pub.group) == ("pubs", "eating and drinking")
    assert mapping.classify({"amenity": "cafe"}).reason == REASON_NO_POI_TAG  # not a key now
    assert mapping.classify({"amenity": "bench"}).category == "bench"  # no longer excluded
    assert mapping.classify({"shop": "vacant"}).reason == REASON_EXCLUDED_TAG
    assert mapping.classify({"shop": "shoes"}).group == "shops"
    assert mapping.classify({"shop": "bakery"}).group == "food"
    # the defaults' tables stay under the overrides
    assert mapping.classify({"shop": "doityourself"}).category == "DIY store"
    assert DEFAULT.classify({"amenity": "pub"}).category == "pub"  # the default is unchanged


def test_a_bare_key_in_exclude_excludes_every_value() -> None:
    mapping = source_mapping({"exclude": ["office"]})
    assert mapping.classify({"office": "it"}).reason == REASON_EXCLUDED_TAG
    assert mapping.classify({"office": "it"}).tag == "office=it"


def test_humanise() -> None:
    assert humanise("fast_food") == "fast food"
    assert humanise(" bicycle__rental ") == "bicycle rental"


def test_shipped_file_is_consistent() -> None:
    """Every group/category entry names a key the mapping reads; no key listed twice."""
    assert DEFAULT_TAGS_FILE.is_file()
    keys = DEFAULT.keys
    assert len(keys) == len(set(keys)) and keys[:5] == (
        "amenity",
        "shop",
        "leisure",
        "tourism",
        "office",
    )
    bare = set(DEFAULT.tag_keys)
    for entry in [*DEFAULT.groups, *DEFAULT.categories, *DEFAULT.exclude]:
        assert entry.split("=", 1)[0] in bare, entry
    for key in bare:
        assert key in DEFAULT.groups, f"{key} has no default group"


CITY = """\
key = "osm_town"
name = "OSM town"
bounds_wgs84 = [9.9, 49.9, 10.1, 50.1]

[snapshot]
path = "{path}"
{extra}
"""


def _load(tmp_path: Path, extra: str, path: str = "town/town.osm.pbf") -> object:
    f = tmp_path / "c.toml"
    f.write_text(CITY.format(path=path, extra=extra))
    return load_city_file(f)


def test_city_file_osm_table_is_read(tmp_path: Path) -> None:
    city = _load(
        tmp_path,
        '[snapshot.osm]\nkeys = ["amenity", "shop"]\nexclude = []\n'
        'categories = { "amenity=pub" = ["pubs", "eating and drinking"] }\n'
        'groups = { shop = "shops" }\n',
    )
    snap = city.snapshot  # type: ignore[attr-defined]
    assert snap.format == "osm" and snap.columns == OSM_COLUMNS  # told by the suffix
    assert snap.osm["keys"] == ["amenity", "shop"] and snap.osm["exclude"] == []
    assert _load(tmp_path, 'format = "osm-geojson"', "t.geojson").snapshot.format == "osm-geojson"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[snapshot.osm]\nkey = []", r"snapshot\.osm\.key: unknown key \(did you mean 'keys'\?\)"),
        ("[snapshot.osm]\nkeys = [1]", r"snapshot\.osm\.keys: expected a list of keys"),
        ("[snapshot.osm]\nkeys = []", r"snapshot\.osm\.keys: needs at least one key"),
        ('[snapshot.osm]\nexclude = "amenity=bench"', r"snapshot\.osm\.exclude: expected a list"),
        (
            '[snapshot.osm]\ncategories = { "amenity=pub" = "pubs" }',
            r'snapshot\.osm\.categories\."amenity=pub": expected \[category, group\]',
        ),
        (
            '[snapshot.osm]\ncategories = { amenity = ["a", "b"] }',
            r'snapshot\.osm\.categories\."amenity": the key must be a key=value tag',
        ),
        (
            "[snapshot.osm]\ngroups = { shop = 3 }",
            r'snapshot\.osm\.groups\."shop": expected a group',
        ),
        (
            '[snapshot.columns]\ncategory = "c"',
            r"snapshot\.columns: not used with format 'osm'",
        ),
    ],
)
def test_city_file_osm_mistakes_name_the_field(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, extra)


def test_osm_table_on_a_non_osm_source_is_refused(tmp_path: Path) -> None:
    extra = (
        '[snapshot.columns]\ncategory = "c"\nlon = "x"\nlat = "y"\n[snapshot.osm]\nkeys = ["shop"]'
    )
    with pytest.raises(ConfigError, match=r"snapshot\.osm: only for OpenStreetMap sources"):
        _load(tmp_path, extra, "t.csv")
    with pytest.raises(ConfigError, match=r"snapshot\.columns: required"):
        _load(tmp_path, "", "t.csv")
