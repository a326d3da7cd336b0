import math

import pandas as pd
import pytest

from calliper_pipeline.cities.spec import CitySpec, ColumnMap, SnapshotSpec
from calliper_pipeline.config import DescriptionConfig
from calliper_pipeline.errors import ConfigError
from calliper_pipeline.ingest.descriptions import describe, describe_frame


def _city(**kwargs) -> CitySpec:
    snapshot = SnapshotSpec(path="x.csv", columns=ColumnMap(category="c", lon="lon", lat="lat"))
    return CitySpec(key="t", name="T", snapshot=snapshot, **kwargs)


def test_paper_template_lowercases_category_and_group():
    assert (
        describe("Restaurant", "Eating and Drinking")
        == "A place of restaurant, a type of eating and drinking"
    )


def test_lowercase_off_keeps_case():
    assert describe("Bus Stop", "Public Transport", lowercase=False) == (
        "A place of Bus Stop, a type of Public Transport"
    )


@pytest.mark.parametrize("group", [None, math.nan, pd.NA, "", "   "])
def test_missing_group_drops_group_clause(group):
    assert describe("Post Box", group) == "A place of post box"


def test_values_are_stripped():
    assert describe("  Cafe ", " Eating and drinking  ") == (
        "A place of cafe, a type of eating and drinking"
    )


def test_calliper_plus_uses_name_template_when_named():
    assert describe("Pub", "Eating and drinking", "The Crown", variant="calliper_plus") == (
        "The Crown, a place of pub, a type of eating and drinking"
    )
    # the name keeps its case; only class and group are lower-cased
    assert describe("Pub", None, "The Crown", variant="calliper_plus") == (
        "The Crown, a place of pub"
    )


@pytest.mark.parametrize("name", [None, "", "  ", math.nan])
def test_calliper_plus_without_name_falls_back_to_plain_template(name):
    assert describe("Pub", "Eating and drinking", name, variant="calliper_plus") == (
        "A place of pub, a type of eating and drinking"
    )


def test_plain_variant_ignores_name():
    assert describe("Pub", "Eating and drinking", "The Crown") == (
        "A place of pub, a type of eating and drinking"
    )


def test_custom_templates():
    assert describe("Cafe", "Food", template="{category} ({group})") == "cafe (food)"
    # a template whose only clause holds the group degrades to the bare category
    assert describe("Cafe", None, template="{category} in {group}") == "cafe"


def test_missing_category_raises():
    with pytest.raises(ValueError, match="category"):
        describe(None, "Retail")
    with pytest.raises(ValueError):
        describe("  ", "Retail")


def test_unknown_placeholder_raises_config_error():
    with pytest.raises(ConfigError, match="colour"):
        describe("Cafe", "Food", template="A {colour} {category}")


def test_describe_frame_matches_hand_written_strings():
    df = pd.DataFrame(
        {
            "category": ["Restaurant", "Post box", "Pub", "Restaurant"],
            "category_group": [
                "Eating and drinking",
                None,
                "Eating and drinking",
                "Eating and drinking",
            ],
            "name": ["Luigi's", "Box 1", None, ""],
        },
        index=[10, 11, 12, 13],
    )
    plain = describe_frame(df, _city(), DescriptionConfig())
    assert list(plain.index) == [10, 11, 12, 13]
    assert plain.tolist() == [
        "A place of restaurant, a type of eating and drinking",
        "A place of post box",
        "A place of pub, a type of eating and drinking",
        "A place of restaurant, a type of eating and drinking",
    ]
    plus = describe_frame(df, _city(), DescriptionConfig(variant="calliper_plus"))
    assert plus.tolist() == [
        "Luigi's, a place of restaurant, a type of eating and drinking",
        "Box 1, a place of post box",
        "A place of pub, a type of eating and drinking",
        "A place of restaurant, a type of eating and drinking",
    ]


def test_describe_frame_uses_city_templates_and_lowercase_flag():
    city = _city(description_template="{group}: {category}")
    df = pd.DataFrame({"category": ["Cafe"], "category_group": ["Food"], "name": [None]})
    assert describe_frame(df, city, DescriptionConfig(lowercase=False)).tolist() == ["Food: Cafe"]


def test_describe_frame_without_group_column():
    df = pd.DataFrame({"category": ["Cafe", "Bar"]})
    assert describe_frame(df, _city(), DescriptionConfig()).tolist() == [
        "A place of cafe",
        "A place of bar",
    ]
