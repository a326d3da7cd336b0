"""store.pois: the POI, quarantine and ingest-log tables: schema, round trips, idempotent and
all-or-nothing per-city writes, reads of an empty or read-only store."""

from __future__ import annotations

import dataclasses

import duckdb
import pandas as pd
import pytest

from calliper_pipeline.config import DescriptionConfig
from calliper_pipeline.constants import INGEST_LOG_TABLE, POI_COLUMNS, POIS_TABLE, QUARANTINE_TABLE
from calliper_pipeline.ingest.ingest import ingest_city
from calliper_pipeline.ingest.readers import read_snapshot
from calliper_pipeline.ingest.validate import NormalisedPois, normalise_pois
from calliper_pipeline.store import pois as store
from calliper_pipeline.store.db import connect
from calliper_pipeline.store.schema import ensure_poi_schema
from tests.support import synthetic

N_POIS = 200


@pytest.fixture
def city(tmp_path):
    return synthetic.make_synthetic_city(
        tmp_path / "city", n_pois=N_POIS, bad_rows=True, evaluation=False
    )


@pytest.fixture
def normalised(city, tmp_path) -> NormalisedPois:
    raw = read_snapshot(city.snapshot_path(tmp_path), city.snapshot)
    return normalise_pois(raw, city, tmp_path, DescriptionConfig(), "hash-1")


@pytest.fixture
def con(tmp_path):
    connection = connect(tmp_path / "nested" / "dir" / "pois.duckdb")
    yield connection
    connection.close()


def _count(con, table, city_key="synthetic") -> int:
    return con.execute(f"SELECT count(*) FROM {table} WHERE city = ?", [city_key]).fetchall()[0][0]


def _write(con, n: NormalisedPois, key: str = "synthetic") -> None:
    pois = n.pois.assign(city=key)
    quarantine = n.quarantine.assign(city=key)
    store.write_city_pois(con, key, pois, quarantine, dataclasses.replace(n.report, city=key))


def test_connect_creates_parent_dirs(tmp_path):
    path = tmp_path / "a" / "b" / "x.duckdb"
    connect(path).close()
    assert path.exists()


def test_schema_types_and_idempotence(con):
    ensure_poi_schema(con)
    ensure_poi_schema(con)
    types = dict(
        con.execute(
            f"SELECT column_name, data_type FROM information_schema.columns "
            f"WHERE table_name = '{POIS_TABLE}'"
        ).fetchall()
    )
    assert tuple(types) == POI_COLUMNS
    assert {types[c] for c in ("lon", "lat", "x_m", "y_m")} == {"DOUBLE"}
    assert types["source_row"] == "BIGINT" and types["poi_id"] == "VARCHAR"
    tables = {
        r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    }
    assert {POIS_TABLE, QUARANTINE_TABLE, INGEST_LOG_TABLE} <= tables


def test_reads_of_an_empty_store(tmp_path):
    con = duckdb.connect(str(tmp_path / "empty.duckdb"))
    assert store.read_city_pois(con, "x").empty
    assert tuple(store.read_city_pois(con, "x").columns) == POI_COLUMNS
    assert store.read_quarantine(con, "x").empty
    assert store.latest_ingest(con, "x") is None
    assert store.city_category_mix(con, "x").empty


def test_round_trip(con, normalised):
    _write(con, normalised)
    back = store.read_city_pois(con, "synthetic")
    pd.testing.assert_frame_equal(back, normalised.pois, check_dtype=False)
    q = store.read_quarantine(con, "synthetic")
    pd.testing.assert_frame_equal(q, normalised.quarantine, check_dtype=False)


def test_rewrite_replaces_never_duplicates(con, normalised):
    _write(con, normalised)
    _write(con, normalised)
    assert _count(con, POIS_TABLE) == N_POIS
    assert _count(con, QUARANTINE_TABLE) == 8
    assert _count(con, INGEST_LOG_TABLE) == 2
    log = store.latest_ingest(con, "synthetic")
    assert log is not None
    assert log["ingest_id"] == 2
    assert log["rows_valid"] == N_POIS and log["rows_quarantined"] == 8
    assert log["quarantined_by"] == synthetic.BAD_ROWS
    assert log["filtered_by"] == {"is_duplicate": synthetic.FILTERED_ROWS}
    assert log["snapshot_hash"] == "hash-1" and log["metric_epsg"] == 32632


def test_ingest_city_twice_gives_same_rows(con, city, tmp_path):
    ingest_city(con, city, tmp_path)
    first = store.read_city_pois(con, "synthetic")
    ingest_city(con, city, tmp_path)
    second = store.read_city_pois(con, "synthetic")
    assert len(first) == len(second) == N_POIS
    pd.testing.assert_frame_equal(first, second)


def test_cities_are_independent(con, normalised):
    _write(con, normalised, "a")
    _write(con, normalised, "b")
    _write(con, normalised, "a")
    assert _count(con, POIS_TABLE, "a") == _count(con, POIS_TABLE, "b") == N_POIS
    log = store.latest_ingest(con, "b")
    assert log is not None and log["ingest_id"] == 2


def test_failure_mid_write_rolls_back(con, normalised, monkeypatch):
    _write(con, normalised)
    before = store.read_city_pois(con, "synthetic")

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store, "_insert_ingest_log", boom)
    smaller = dataclasses.replace(normalised, pois=normalised.pois.iloc[:10])
    with pytest.raises(RuntimeError, match="disk on fire"):
        _write(con, smaller)
    pd.testing.assert_frame_equal(store.read_city_pois(con, "synthetic"), before)
    assert _count(con, QUARANTINE_TABLE) == 8
    assert _count(con, INGEST_LOG_TABLE) == 1


def test_bad_data_mid_write_rolls_back(con, normalised):
    _write(con, normalised)
    bad_q = normalised.quarantine.assign(source_row="not a number")
    with pytest.raises(duckdb.Error):
        store.write_city_pois(con, "synthetic", normalised.pois.iloc[:5], bad_q, normalised.report)
    assert _count(con, POIS_TABLE) == N_POIS
    assert _count(con, QUARANTINE_TABLE) == 8
    # the connection is usable after the rollback
    _write(con, normalised)
    assert _count(con, INGEST_LOG_TABLE) == 2


def test_duplicate_ids_are_refused_and_rolled_back(con, normalised):
    _write(con, normalised)
    doubled = pd.concat([normalised.pois, normalised.pois.iloc[:1]], ignore_index=True)
    with pytest.raises(ValueError, match="duplicate poi_id"):
        store.write_city_pois(con, "synthetic", doubled, normalised.quarantine, normalised.report)
    assert _count(con, POIS_TABLE) == N_POIS


def test_frames_are_checked_before_writing(con, normalised):
    with pytest.raises(ValueError, match="other than"):
        store.write_city_pois(
            con, "elsewhere", normalised.pois, normalised.quarantine, normalised.report
        )
    with pytest.raises(ValueError, match="lacks columns"):
        store.write_city_pois(
            con,
            "synthetic",
            normalised.pois.drop(columns="x_m"),
            normalised.quarantine,
            normalised.report,
        )
    assert store.latest_ingest(con, "synthetic") is None


def test_empty_quarantine_is_fine(con, normalised):
    empty_q = normalised.quarantine.iloc[:0]
    store.write_city_pois(con, "synthetic", normalised.pois, empty_q, normalised.report)
    assert store.read_quarantine(con, "synthetic").empty


def test_category_mix_matches_hand_counts(con, normalised):
    _write(con, normalised)
    mix = store.city_category_mix(con, "synthetic")
    expected = normalised.pois["category"].value_counts(normalize=True)
    assert mix.sum() == pytest.approx(1.0)
    assert mix.is_monotonic_decreasing
    for category, share in expected.items():
        assert mix[category] == pytest.approx(share)


def test_read_only_connection_reads(tmp_path, normalised):
    path = tmp_path / "ro.duckdb"
    con = connect(path)
    _write(con, normalised)
    con.close()
    ro = connect(path, read_only=True)
    assert len(store.read_city_pois(ro, "synthetic")) == N_POIS
    ro.close()


def test_latest_ingest_reads_a_log_older_than_its_newer_columns(tmp_path) -> None:
    """A store written before ``cleaned_by`` and ``warnings`` existed (no ingest has added them
    yet) still reads: the missing maps are empty."""
    import datetime as dt

    from calliper_pipeline.store import schema

    with connect(tmp_path / "old.duckdb") as con:
        con.execute(schema._INGEST_LOG_DDL)  # the first release's columns (+ two added early)
        con.execute(
            "INSERT INTO ingest_log VALUES (3, 'old', 'abc', 'p.csv', 27700, 5, 1, 4, 0, "
            "'{\"in_city\": 1}', '{}', 0.5, ?, 0, '{}')",
            [dt.datetime(2026, 1, 1)],
        )
        row = store.latest_ingest(con, "old")
    assert row is not None and row["ingest_id"] == 3 and row["filtered_by"] == {"in_city": 1}
    assert row["cleaned_by"] == {} and row["warnings"] == []
