"""The derived-artefact folder cache and the hashes that key it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from calliper_pipeline.hashing import code_fingerprint, json_hash, layer_hash
from calliper_pipeline.steps import cache


def _maker(calls: list[Path], text: str = "drawn"):
    def make(folder: Path) -> dict:
        calls.append(folder)
        (folder / "map.png").write_text(text)
        return {"files": ["map.png"], "n_cells": 7}

    return make


def test_a_second_build_with_the_same_parts_is_a_hit(tmp_path: Path) -> None:
    calls: list[Path] = []
    parts = {"model_uri": "models:/calliper_x/1", "queries": ["a", "b"]}
    first = cache.build(tmp_path, "maps", parts, _maker(calls))
    second = cache.build(tmp_path, "maps", dict(reversed(list(parts.items()))), _maker(calls))
    assert len(calls) == 1 and (first.hit, second.hit) == (False, True)
    assert first.key == second.key == cache.key_of(parts) and len(first.key) == 16
    assert second.folder == tmp_path / "maps" / first.key
    assert second.path("map.png").read_text() == "drawn"
    assert second.payload == {"files": ["map.png"], "n_cells": 7}
    assert second.covers == ("model_uri", "queries") == first.covers
    # the builder ran in a temporary folder, renamed into place when complete
    assert calls[0] != first.folder and not calls[0].exists()


def test_a_changed_part_is_a_miss(tmp_path: Path) -> None:
    calls: list[Path] = []
    a = cache.build(tmp_path, "maps", {"queries": ["a"]}, _maker(calls))
    b = cache.build(tmp_path, "maps", {"queries": ["a", "b"]}, _maker(calls))
    c = cache.build(tmp_path, "evaluation-luc", {"queries": ["a"]}, _maker(calls))
    assert len(calls) == 3 and not (a.hit or b.hit or c.hit) and a.key != b.key
    assert a.key == c.key and a.folder != c.folder  # the same key in another kind


def test_a_failed_build_leaves_no_entry(tmp_path: Path) -> None:
    def broken(folder: Path) -> dict:
        (folder / "half.png").write_text("half")
        raise RuntimeError("killed while drawing")

    with pytest.raises(RuntimeError, match="killed while drawing"):
        cache.build(tmp_path, "maps", {"v": 1}, broken)
    assert list((tmp_path / "maps").iterdir()) == []
    calls: list[Path] = []
    assert cache.build(tmp_path, "maps", {"v": 1}, _maker(calls)).hit is False


def test_an_entry_missing_a_listed_file_or_its_record_is_a_miss(tmp_path: Path) -> None:
    calls: list[Path] = []
    entry = cache.build(tmp_path, "maps", {"v": 1}, _maker(calls))
    entry.path("map.png").unlink()
    assert cache.lookup(tmp_path, "maps", entry.key) is None
    rebuilt = cache.build(tmp_path, "maps", {"v": 1}, _maker(calls, "redrawn"))
    assert rebuilt.hit is False and rebuilt.path("map.png").read_text() == "redrawn"
    (rebuilt.folder / cache.ENTRY_FILE).write_text("{not json")
    assert cache.lookup(tmp_path, "maps", entry.key) is None
    assert len(calls) == 2


def test_the_entry_record_says_what_the_key_covers(tmp_path: Path) -> None:
    entry = cache.build(tmp_path, "k", {"b": 2, "a": [1]}, lambda folder: {"x": 1})
    record = json.loads((entry.folder / cache.ENTRY_FILE).read_text())
    assert record == {"key": entry.key, "covers": ["a", "b"], "payload": {"x": 1}}


def test_json_hash_ignores_key_order_and_sees_values() -> None:
    assert json_hash({"a": 1, "b": [1, 2]}) == json_hash({"b": [1, 2], "a": 1})
    assert json_hash({"a": 1}) != json_hash({"a": 2})
    assert len(json_hash({"a": 1}, length=8)) == 8


def test_code_fingerprint_follows_the_source(tmp_path: Path, monkeypatch) -> None:
    pkg = tmp_path / "fpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "draw.py").write_text("WIDTH = 600\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = code_fingerprint("fpkg")
    assert code_fingerprint("fpkg") == before and code_fingerprint("fpkg.draw") != before
    (pkg / "draw.py").write_text("WIDTH = 601\n")
    assert code_fingerprint("fpkg") != before
    with pytest.raises(ModuleNotFoundError, match="no_such_module_here"):
        code_fingerprint("no_such_module_here")


def test_layer_hash_covers_a_shapefiles_sidecars(tmp_path: Path) -> None:
    for ext, text in ((".shp", "geometry"), (".dbf", "attributes"), (".prj", "27700")):
        (tmp_path / f"grid{ext}").write_text(text)
    (tmp_path / "other.dbf").write_text("not part of the layer")
    before = layer_hash(tmp_path / "grid.shp")
    (tmp_path / "other.dbf").write_text("changed")
    assert layer_hash(tmp_path / "grid.shp") == before
    (tmp_path / "grid.dbf").write_text("attributes, edited")
    assert layer_hash(tmp_path / "grid.shp") != before
    with pytest.raises(FileNotFoundError):
        layer_hash(tmp_path / "missing.geojson")
