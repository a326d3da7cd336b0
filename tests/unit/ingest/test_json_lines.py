"""JSON lines (one object per line; .jsonl / .ndjson, gzip too) as a POI snapshot."""

from __future__ import annotations

import gzip
from dataclasses import replace
from pathlib import Path

import pytest

from calliper_pipeline.cities.spec import ColumnMap, SnapshotSpec
from calliper_pipeline.errors import ConfigError, SnapshotFormatError
from calliper_pipeline.ingest.ingest import ingest_city
from calliper_pipeline.ingest.readers import read_snapshot
from calliper_pipeline.store.db import connect
from tests.support import synthetic

COLUMNS = ColumnMap(poi_id="id", name="name", category="cat", lon="lon", lat="lat")
LINES = (
    '{"id": 7, "name": "Rose", "cat": "pub", "lon": 10.0, "lat": 50.0, "tags": {"a": 1}}\n'
    "\n"
    '{"id": 8, "cat": "cafe", "lon": "10.01", "lat": 50.01}\n'
    '{"id": null, "name": "x", "cat": "bar", "lon": null, "lat": 50.02}\n'
)


@pytest.mark.parametrize("name", ["p.jsonl", "p.ndjson", "p.jsonl.gz", "p.ndjson.gz"])
def test_reads_objects_by_suffix_and_gzip(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    data = LINES.encode()
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    df = read_snapshot(path, SnapshotSpec(path=name, columns=COLUMNS))
    assert df["source_row"].tolist() == [1, 2, 3]  # the blank line is no row
    assert df["id"].astype("string").tolist()[:2] == ["7", "8"]  # not "7.0"
    assert df["name"].tolist()[1] is None or df["name"].isna().tolist()[1]  # missing key
    assert df["lon"].tolist()[:2] == [10.0, 10.01] and df["lon"].isna().tolist()[2]


def test_bad_line_names_file_row_and_line(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": 1, "cat": "a", "lon": 1, "lat": 2}\n{"id": 2, "cat": \n')
    with pytest.raises(SnapshotFormatError, match=r"p\.jsonl, row 2: line 2 is not valid JSON"):
        read_snapshot(path, SnapshotSpec(path="p", columns=COLUMNS, format="jsonl"))
    path.write_text('{"id": 1, "cat": "a", "lon": 1, "lat": 2}\n[1, 2]\n')
    with pytest.raises(SnapshotFormatError, match="line 2 is a JSON list, not an object"):
        read_snapshot(path, SnapshotSpec(path="p", columns=COLUMNS, format="ndjson"))
    path.write_text("\n\n")
    with pytest.raises(SnapshotFormatError, match="no JSON object"):
        read_snapshot(path, SnapshotSpec(path="p", columns=COLUMNS, format="jsonl"))
    path.write_text('{"id": 1, "lon": 1, "lat": 2}\n')
    with pytest.raises(SnapshotFormatError, match="missing required column"):
        read_snapshot(path, SnapshotSpec(path="p", columns=COLUMNS, format="jsonl"))


def test_ingest_of_swapped_bounds_says_so(tmp_path: Path) -> None:
    city = synthetic.make_synthetic_city(tmp_path, n_pois=50, fmt="jsonl", evaluation=False)
    b = city.bounds_wgs84
    assert b is not None
    swapped = replace(city, bounds_wgs84=(b[1], b[0], b[3], b[2]))
    with connect(tmp_path / "w.duckdb") as con:
        with pytest.raises(ConfigError, match="lat and lon swapped"):
            ingest_city(con, swapped, tmp_path)
        assert ingest_city(con, city, tmp_path).rows_valid == 50
