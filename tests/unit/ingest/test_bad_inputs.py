"""The bad-input corpus (tests/support/bad_inputs.py): every case ingested, its exact outcome.

A case either ingests (the rows stored, quarantined per reason, cleaned, and the warnings are
exactly the case's) or is refused with one line naming the file (the whole message matched).
A few cases also go through ``calliper ingest`` in-process and one as a subprocess, to show the
user gets one line on stderr and no traceback.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from calliper_pipeline.errors import CalliperError
from calliper_pipeline.ingest.ingest import ingest_city
from calliper_pipeline.store import pois as store
from calliper_pipeline.store.db import connect
from jobs.cli.parser import main
from tests.support import bad_inputs
from tests.support.bad_inputs import KEY, Case

CASES = bad_inputs.cases()


def test_the_corpus_is_large_and_spans_every_format() -> None:
    assert len(CASES) >= 30
    assert {c.fmt for c in CASES} == {"csv", "csv.gz", "geojson", "parquet"}
    assert sum(c.error is not None for c in CASES) >= 10
    assert sum(bool(c.quarantined) for c in CASES) >= 10
    assert sum(bool(c.warnings) for c in CASES) >= 4


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_outcome(case: Case, tmp_path: Path) -> None:
    path = case.write(tmp_path)
    city = bad_inputs.city(path, **case.options)
    con = connect(tmp_path / "db.duckdb")
    try:
        if case.error is not None:
            with pytest.raises(CalliperError) as info:
                ingest_city(con, city, tmp_path)
            message = str(info.value)
            assert "\n" not in message
            assert re.fullmatch(case.error_pattern(path), message), message
            assert store.latest_ingest(con, KEY) is None  # nothing written
            return
        report = ingest_city(con, city, tmp_path)
        assert report.rows_valid == case.valid
        assert report.quarantined_by == case.quarantined
        assert report.cleaned_by == case.cleaned
        assert len(report.warnings) == len(case.warnings), report.warnings
        for pattern, note in zip(case.warnings, report.warnings, strict=True):
            assert re.fullmatch(pattern, note), note
        pois = store.read_city_pois(con, KEY)
        quarantine = store.read_quarantine(con, KEY)
        assert len(pois) == case.valid
        assert quarantine["reason"].value_counts().to_dict() == case.quarantined
        names = dict(zip(pois["poi_id"], pois["name"], strict=True))
        for poi_id, name in case.stored.items():
            assert names[poi_id] == name
        log = store.latest_ingest(con, KEY)
        assert log is not None and log["cleaned_by"] == case.cleaned
        assert len(log["warnings"]) == len(case.warnings)
    finally:
        con.close()


def test_quarantined_rows_name_row_field_and_raw_text(tmp_path: Path) -> None:
    case = next(c for c in CASES if c.name == "gzip_ragged_and_unparseable")
    path = case.write(tmp_path)
    con = connect(tmp_path / "db.duckdb")
    ingest_city(con, bad_inputs.city(path), tmp_path)
    q = store.read_quarantine(con, KEY).set_index("reason")
    n = bad_inputs.N_GOOD
    assert q.loc["unparseable coordinates", "source_row"] == n + 1
    assert q.loc["unparseable coordinates", "field"] == "lat"
    assert '"lat":"abc"' in q.loc["unparseable coordinates", "raw_json"]
    assert q.loc["ragged row", "source_row"] == n + 2
    assert '"line": 1103' in q.loc["ragged row", "raw_json"]
    assert q.loc["ragged row", "field"] is None


# --------------------------------------------------------------------------- the CLI


def _cli(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = case.write(tmp_path)
    toml = tmp_path / "corpus.toml"
    toml.write_text(bad_inputs.city_toml(path, **case.options), encoding="utf-8")
    argv = ["ingest", "--city", KEY, "--cities", str(toml), "--data-root", str(tmp_path)]
    rc = main([*argv, "--home", str(tmp_path / "home")])
    out, err = capsys.readouterr()
    return rc, out, err


CLI_ERRORS = [
    "csv_semicolon_delimiter",
    "csv_latin1_undeclared",
    "csv_swapped_lat_lon",
    "geojson_projected_crs_undeclared",
    "parquet_garbage_bytes",
]


@pytest.mark.parametrize("name", CLI_ERRORS)
def test_cli_refuses_in_one_line(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CALLIPER_DEBUG", raising=False)
    case = next(c for c in CASES if c.name == name)
    rc, out, err = _cli(case, tmp_path, capsys)
    assert rc == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    path = tmp_path / Path(case.write(tmp_path)).name
    assert re.fullmatch("calliper ingest: error: " + case.error_pattern(path), lines[0])


def test_cli_quarantines_and_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    case = next(c for c in CASES if c.name == "degenerate_three_rows")
    rc, out, err = _cli(case, tmp_path, capsys)
    assert rc == 0
    assert out.startswith(f"{KEY}: 3 rows read, 3 valid, 0 filtered out {{}}, 0 quarantined {{}}")
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert warnings == [
        f"calliper ingest: warning: {KEY}: 3 POIs, fewer than one training batch (1,024)",
        f"calliper ingest: warning: {KEY}: one category only ('cafe'): nothing to contrast",
        f"calliper ingest: warning: {KEY}: all 3 POIs lie at 1 distinct place(s) (to the metre)",
    ]


def test_cli_subprocess_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    case = next(c for c in CASES if c.name == "csv_mostly_decimal_commas")
    path = case.write(tmp_path)
    toml = tmp_path / "corpus.toml"
    toml.write_text(bad_inputs.city_toml(path), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "CALLIPER_DEBUG"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[3])
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.cli.parser", "ingest", "--city", KEY, "--cities", str(toml),
         "--data-root", str(tmp_path), "--home", str(tmp_path / "home")],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert re.fullmatch(
        "calliper ingest: error: " + case.error_pattern(path) + "\n", proc.stderr
    ), proc.stderr


def test_cli_reads_the_encoding_and_delimiter_declared_in_the_city_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("csv_latin1_declared", "csv_decimal_comma_declared"):
        case = next(c for c in CASES if c.name == name)
        assert case.options  # the options travel through the TOML file
        rc, out, err = _cli(case, tmp_path / name, capsys)
        assert rc == 0 and "error" not in err
        assert out.startswith(f"{KEY}: {bad_inputs.N_GOOD:,} rows read, {case.valid:,} valid")


def test_swapped_columns_in_a_city_with_a_boundary_file(tmp_path: Path) -> None:
    """A city bounded by a boundary file (no bounds_wgs84 to blame): the per-source check
    says the file's latitude and longitude look exchanged, and nothing is written."""
    import geopandas as gpd
    from shapely.geometry import box

    case = next(c for c in CASES if c.name == "csv_swapped_lat_lon")
    path = case.write(tmp_path)
    city = bad_inputs.city(path)
    assert city.bounds_wgs84 is not None
    outline = gpd.GeoDataFrame(geometry=[box(*city.bounds_wgs84)], crs="EPSG:4326")
    outline.to_file(tmp_path / "boundary.geojson", driver="GeoJSON")
    bounded = replace(city, bounds_wgs84=None, boundary_path="boundary.geojson")
    with connect(tmp_path / "db.duckdb") as con:
        with pytest.raises(CalliperError) as info:
            ingest_city(con, bounded, tmp_path)
        assert store.latest_ingest(con, KEY) is None
    pattern = (
        re.escape(str(path)) + r", field 'lon,lat': latitude and longitude look swapped: 1100 of "
        r"1100 rows lie outside the city but 1100 inside with 'lon' and 'lat' exchanged; "
        r"exchange the two column names in the source's columns of the city file"
    )
    assert re.fullmatch(pattern, str(info.value)), str(info.value)
