"""City keys are validated when a city file is parsed and in get_city."""

from __future__ import annotations

from pathlib import Path

import pytest

from calliper_pipeline.cities.spec import (
    CitySpec,
    ColumnMap,
    SnapshotSpec,
    get_city,
    load_city_file,
    load_city_registry,
    validate_city_key,
)
from calliper_pipeline.errors import ConfigError

BAD_KEYS = ["../../x", "London", "1city", "", "a-b", "a b", "a/b", "ä", "a" * 65, "x\n"]
GOOD_KEYS = ["a", "london", "new_york", "c1", "a" * 64]


def _toml(key: str) -> str:
    return (
        f'key = "{key}"\nname = "X"\n\n[snapshot]\npath = "p.csv"\n\n'
        '[snapshot.columns]\ncategory = "c"\nlon = "lon"\nlat = "lat"\n'
    )


@pytest.mark.parametrize("key", GOOD_KEYS)
def test_valid_keys_are_accepted(key: str, tmp_path: Path) -> None:
    assert validate_city_key(key) == key
    path = tmp_path / "c.toml"
    path.write_text(_toml(key))
    assert load_city_file(path).key == key


@pytest.mark.parametrize("key", [k for k in BAD_KEYS if "\n" not in k])
def test_invalid_key_in_a_file_is_refused_naming_file_and_key(key: str, tmp_path: Path) -> None:
    path = tmp_path / "evil.toml"
    path.write_text(_toml(key.replace("\\", "\\\\")))
    with pytest.raises(ConfigError) as err:
        load_city_file(path)
    assert str(path) in str(err.value) and repr(key) in str(err.value)
    with pytest.raises(ConfigError):
        load_city_registry([path])


def test_missing_or_non_string_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(_toml("ok").replace('key = "ok"', "key = 3"))
    with pytest.raises(ConfigError, match="invalid city key 3"):
        load_city_file(path)
    path.write_text(_toml("ok").replace('key = "ok"\n', ""))
    with pytest.raises(ConfigError, match="invalid city key None"):
        load_city_file(path)


@pytest.mark.parametrize("key", BAD_KEYS)
def test_get_city_refuses_before_looking_up(key: str) -> None:
    with pytest.raises(ConfigError, match="invalid city key"):
        get_city(key, registry={})


@pytest.mark.parametrize("key", BAD_KEYS)
def test_a_spec_cannot_be_built_with_a_bad_key(key: str) -> None:
    snap = SnapshotSpec(path="p.csv", columns=ColumnMap(category="c", lon="x", lat="y"))
    with pytest.raises(ConfigError):
        CitySpec(key=key, name="x", snapshot=snap)


def test_builtin_cities_have_valid_keys() -> None:
    for key in load_city_registry():
        assert validate_city_key(key) == key
