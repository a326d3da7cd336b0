"""Ingest: every snapshot format, validation and quarantine, projection, and the store write."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import LineString, Point

from calliper_pipeline.cities.spec import CitySpec, ColumnMap, SnapshotSpec, get_city
from calliper_pipeline.config import DescriptionConfig
from calliper_pipeline.constants import POI_COLUMNS
from calliper_pipeline.errors import ConfigError, EmptySnapshotError, SnapshotFormatError
from calliper_pipeline.hashing import file_hash, text_hash
from calliper_pipeline.ingest.filters import apply_filters
from calliper_pipeline.ingest.ids import stable_id
from calliper_pipeline.ingest.ingest import ingest_city
from calliper_pipeline.ingest.readers import read_snapshot
from calliper_pipeline.ingest.report import IngestReport
from calliper_pipeline.ingest.validate import (
    NormalisedPois,
    normalise_pois,
    snapshot_metric_epsg,
)
from calliper_pipeline.store import pois as store
from calliper_pipeline.store.db import connect
from tests.support import synthetic

N_POIS = 300
CFG = DescriptionConfig()
# The SOURCE.md sample row "Scala": WGS84 and its British National Grid coordinates.
SCALA_LONLAT = (-0.1190473, 51.5301846)
SCALA_BNG = (530571.0, 182929.4)
LONDON_BOUNDS_WGS84 = (-0.6, 51.2, 0.4, 51.8)

COLUMNS = ColumnMap(poi_id="id", name="name", category="cat", group="grp", lon="lon", lat="lat")
SPEC = SnapshotSpec(path="unused", columns=COLUMNS)
HEADER = "id,name,cat,grp,lon,lat\n"


def _london_like(columns: ColumnMap = COLUMNS, **kwargs) -> CitySpec:
    snapshot = SnapshotSpec(path="unused", columns=columns)
    kw = {"metric_epsg": 27700, "bounds_wgs84": LONDON_BOUNDS_WGS84, **kwargs}
    return CitySpec(key="ldn", name="London-like", snapshot=snapshot, **kw)


def _normalise(city: CitySpec, tmp: Path) -> NormalisedPois:
    path = city.snapshot_path(tmp)
    return normalise_pois(read_snapshot(path, city.snapshot), city, tmp, CFG, "h")


@pytest.fixture(scope="module")
def by_format(tmp_path_factory) -> dict[str, NormalisedPois]:
    """The same synthetic city (with bad rows) in every format, normalised."""
    root = tmp_path_factory.mktemp("formats")
    out = {}
    for fmt in synthetic.SNAPSHOT_FORMATS:
        city = synthetic.make_synthetic_city(
            root / fmt, n_pois=N_POIS, fmt=fmt, bad_rows=True, evaluation=False
        )
        out[fmt] = _normalise(city, root)
    return out


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize("fmt", synthetic.SNAPSHOT_FORMATS[1:])
def test_formats_give_identical_normalised_rows(by_format, fmt):
    pd.testing.assert_frame_equal(by_format[fmt].pois, by_format["csv"].pois)
    pd.testing.assert_frame_equal(
        by_format[fmt].quarantine.drop(columns="raw_json"),
        by_format["csv"].quarantine.drop(columns="raw_json"),
    )
    assert by_format[fmt].report == by_format["csv"].report


def test_normalised_frame_has_exactly_the_poi_columns(by_format):
    pois = by_format["csv"].pois
    assert tuple(pois.columns) == POI_COLUMNS
    assert pois["poi_id"].is_unique
    assert (pois["text_hash"] == pois["description"].map(text_hash)).all()
    assert pois["source_row"].tolist() == list(range(1, N_POIS + 1))
    assert pois[["lon", "lat", "x_m", "y_m"]].dtypes.eq(np.float64).all()


def test_source_row_counts_data_rows_from_one(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text(HEADER + "a,,cafe,food,-0.1,51.5\nb,,bar,food,-0.2,51.4\n")
    raw = read_snapshot(path, SPEC)
    assert raw["source_row"].tolist() == [1, 2]
    assert raw["lon"].tolist() == [-0.1, -0.2]


def test_csv_keeps_na_as_a_name(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text(HEADER + "a,NA,cafe,food,-0.1,51.5\nb,,cafe,food,-0.1,51.5\n")
    raw = read_snapshot(path, SPEC)
    assert raw["name"].iloc[0] == "NA"
    assert pd.isna(raw["name"].iloc[1])


# --------------------------------------------------------------------------- quarantine


def test_quarantine_counts_per_reason(by_format):
    report = by_format["csv"].report
    assert report.quarantined_by == synthetic.BAD_ROWS
    assert report.rows_quarantined == sum(synthetic.BAD_ROWS.values()) == 8
    assert report.filtered_by == {"is_duplicate": synthetic.FILTERED_ROWS}
    assert report.rows_valid == N_POIS


def test_sum_rule(by_format):
    for result in by_format.values():
        r = result.report
        assert r.rows_read == N_POIS + 8 + synthetic.FILTERED_ROWS
        assert r.rows_read == r.rows_valid + r.rows_filtered_out + r.rows_quarantined
        assert len(result.pois) == r.rows_valid
        assert len(result.quarantine) == r.rows_quarantined


def test_report_rejects_unbalanced_counts():
    with pytest.raises(ValueError, match="accounted"):
        IngestReport(
            "c",
            "h",
            1,
            rows_read=3,
            rows_filtered_out=0,
            rows_valid=1,
            rows_quarantined=1,
            quarantined_by={"x": 1},
        )


def test_quarantine_rows_name_row_field_reason_and_raw(by_format):
    q = by_format["csv"].quarantine
    assert list(q.columns) == [
        "city",
        "source_row",
        "poi_id",
        "field",
        "reason",
        "raw_json",
        "source",
    ]
    first_bad = N_POIS + 1
    assert q["source_row"].tolist() == list(range(first_bad, first_bad + 8))
    assert q["reason"].tolist() == (
        ["missing coordinates"] * 2
        + ["outside city bounds"] * 2
        + ["missing category"] * 2
        + ["duplicate id"] * 2
    )
    assert q["field"].tolist() == ["lon"] * 2 + ["lon,lat"] * 2 + ["category"] * 2 + ["poi_id"] * 2
    raw = json.loads(q["raw_json"].iloc[0])
    assert raw["poi_id"] == "bad:nan:0" and raw["lon"] is None


def test_duplicate_id_keeps_the_first(by_format):
    pois = by_format["csv"].pois
    q = by_format["csv"].quarantine
    dup_ids = q.loc[q["reason"] == "duplicate id", "poi_id"].tolist()
    assert dup_ids == ["syn:00000", "syn:00001"]
    kept = pois.set_index("poi_id").loc[dup_ids, "source_row"].tolist()
    assert kept == [1, 2]


def test_every_reason_on_hand_rows(tmp_path):
    (tmp_path / "p.csv").write_text(
        HEADER
        + "a,,cafe,food,-0.1,51.5\n"  # valid
        + ",,cafe,food,-0.1,51.5\n"  # missing id
        + "c,,cafe,food,,51.5\n"  # missing lon
        + "d,,cafe,food,-0.1,inf\n"  # non-finite lat
        + "e,,  ,food,-0.1,51.5\n"  # blank category
        + "f,,cafe,food,2.35,48.85\n"  # Paris
        + "a,,bar,food,-0.1,51.5\n"  # duplicate of a
        + "g,,cafe,,-0.1,51.5\n"  # valid without group
    )
    result = _normalise(_london_like().with_snapshot_path("p.csv"), tmp_path)
    q = result.quarantine
    assert dict(zip(q["source_row"], q["reason"], strict=True)) == {
        2: "missing id",
        3: "missing coordinates",
        4: "non-finite coordinates",
        5: "missing category",
        6: "outside city bounds",
        7: "duplicate id",
    }
    assert dict(zip(q["source_row"], q["field"], strict=True))[2] == "id"
    assert result.pois["poi_id"].tolist() == ["a", "g"]
    assert result.pois["description"].tolist() == [
        "A place of cafe, a type of food",
        "A place of cafe",
    ]
    assert result.pois["category_group"].iloc[1] is None


def test_unparseable_text_coordinates_in_a_frame_are_quarantined(tmp_path):
    # read_snapshot refuses such files; a frame built elsewhere is still covered
    raw = pd.DataFrame(
        {
            "id": ["a", "b"],
            "name": [None, None],
            "cat": ["x", "x"],
            "grp": ["y", "y"],
            "lon": ["-0.1", "west"],
            "lat": ["51.5", "51.5"],
        }
    )
    result = normalise_pois(raw, _london_like(), tmp_path, CFG, "h")
    assert result.report.quarantined_by == {"unparseable coordinates": 1}
    assert result.quarantine["field"].tolist() == ["lon"]


def test_derived_id_when_no_id_column(tmp_path):
    (tmp_path / "p.csv").write_text("cat,lon,lat\ncafe,-0.1,51.5\nbar,-0.2,51.4\n")
    city = _london_like(ColumnMap(category="cat", lon="lon", lat="lat"))
    result = _normalise(city.with_snapshot_path("p.csv"), tmp_path)
    assert result.pois["poi_id"].tolist() == [
        stable_id("primary", None, "cafe", -0.1, 51.5),
        stable_id("primary", None, "bar", -0.2, 51.4),
    ]  # see tests/unit/ingest/test_ids.py
    assert result.pois["name"].isna().all()


# --------------------------------------------------------------------------- filters


@pytest.mark.parametrize(
    "values",
    [
        [True, False, True, False],
        ["True", "False", "True", "False"],
        ["true", "FALSE", " TRUE ", "0"],
        [1, 0, 1, 0],
    ],
)
def test_boolean_filters_match_text_and_bools(values):
    df = pd.DataFrame({"flag": values, "v": range(4)})
    kept, counts = apply_filters(df, {"flag": False})
    assert kept["v"].tolist() == [1, 3]
    assert counts == {"flag": 2}


def test_filters_apply_in_order_and_count_each():
    df = pd.DataFrame({"a": ["x", "x", "y", "x"], "b": [1, 2, 2, 2], "c": [None] * 4})
    kept, counts = apply_filters(df, {"a": "x", "b": 2})
    assert kept.index.tolist() == [1, 3]
    assert counts == {"a": 1, "b": 1}
    kept, counts = apply_filters(df, {"c": True})  # missing values never match
    assert kept.empty and counts == {"c": 4}


# --------------------------------------------------------------------------- format errors


def test_missing_file_raises_file_not_found(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        read_snapshot(path, SPEC)


def test_ragged_csv_row_is_quarantined_and_the_rest_read(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text(HEADER + "a,,cafe,food,-0.1,51.5\nb,,cafe,food,-0.1,51.5\nc,,x,y,1,2,EXTRA\n")
    result = _normalise(_london_like().with_snapshot_path("p.csv"), tmp_path)
    assert result.pois["poi_id"].tolist() == ["a", "b"]
    q = result.quarantine
    assert (q["source_row"].tolist(), q["reason"].tolist()) == ([3], ["ragged row"])
    raw = json.loads(q["raw_json"].iloc[0])
    values = ["c", "", "x", "y", "1", "2", "EXTRA"]
    assert raw == {"line": 4, "fields": 7, "expected": 6, "values": values}


def test_unparseable_coordinate_is_quarantined_naming_row_and_field(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text(HEADER + "a,,cafe,food,-0.1,51.5\nb,,cafe,food,west,51.5\n")
    result = _normalise(_london_like().with_snapshot_path("p.csv"), tmp_path)
    assert result.pois["poi_id"].tolist() == ["a"]
    row = result.quarantine.iloc[0]
    assert (row["source_row"], row["field"], row["reason"]) == (2, "lon", "unparseable coordinates")
    assert json.loads(row["raw_json"])["lon"] == "west"


def test_missing_required_column_names_the_column(tmp_path):
    path = tmp_path / "nocat.csv"
    path.write_text("id,name,grp,lon,lat\na,,food,-0.1,51.5\n")
    with pytest.raises(SnapshotFormatError) as info:
        read_snapshot(path, SPEC)
    assert info.value.field == "cat"
    assert str(path) in str(info.value) and "'cat'" in str(info.value)


def test_missing_filter_column_is_a_format_error(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text(HEADER + "a,,cafe,food,-0.1,51.5\n")
    spec = SnapshotSpec(path="unused", columns=COLUMNS, filters={"is_duplicate": False})
    with pytest.raises(SnapshotFormatError, match="is_duplicate"):
        read_snapshot(path, spec)


def test_non_point_geometry_is_quarantined_naming_row_and_field(tmp_path):
    path = tmp_path / "lines.geojson"
    gdf = gpd.GeoDataFrame(
        {"id": ["a", "b"], "name": [None, None], "cat": ["x", "x"], "grp": ["y", "y"]},
        geometry=[Point(-0.1, 51.5), LineString([(-0.1, 51.5), (-0.2, 51.4)])],
        crs=4326,
    )
    gdf.to_file(path, driver="GeoJSON")
    result = _normalise(_london_like().with_snapshot_path("lines.geojson"), tmp_path)
    assert result.pois["poi_id"].tolist() == ["a"]
    row = result.quarantine.iloc[0]
    assert (row["source_row"], row["field"], row["reason"]) == (2, "geometry", "not a point")
    assert json.loads(row["raw_json"])["geometry_type"] == "LineString"


def test_wrongly_typed_coordinate_column(tmp_path):
    path = tmp_path / "p.parquet"
    pd.DataFrame(
        {"id": ["a"], "name": [None], "cat": ["x"], "grp": ["y"], "lon": [True], "lat": [51.5]}
    ).to_parquet(path)
    with pytest.raises(SnapshotFormatError) as info:
        read_snapshot(path, SPEC)
    assert info.value.field == "lon" and str(path) in str(info.value)


def test_unknown_suffix_and_format(tmp_path):
    path = tmp_path / "p.xlsx"
    path.write_text("x")
    with pytest.raises(SnapshotFormatError, match="format"):
        read_snapshot(path, SPEC)
    with pytest.raises(ConfigError):
        read_snapshot(path, SnapshotSpec(path="p", columns=COLUMNS, format="xlsx"))


def test_garbage_parquet_is_a_format_error(tmp_path):
    path = tmp_path / "p.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(SnapshotFormatError, match=r"p\.parquet"):
        read_snapshot(path, SPEC)


def test_geojson_in_another_crs_is_reprojected_to_source_epsg(tmp_path):
    x, y = SCALA_BNG
    gdf = gpd.GeoDataFrame(
        {"id": ["a"], "name": ["Scala"], "cat": ["nightclub"], "grp": ["culture"]},
        geometry=[Point(x, y)],
        crs=27700,
    )
    gdf.to_file(tmp_path / "p.geojson", driver="GeoJSON")
    raw = read_snapshot(tmp_path / "p.geojson", SPEC)
    assert raw["lon"].iloc[0] == pytest.approx(SCALA_LONLAT[0], abs=2e-6)
    assert raw["lat"].iloc[0] == pytest.approx(SCALA_LONLAT[1], abs=2e-6)


# --------------------------------------------------------------------------- CRS and bounds


def test_normalise_projects_to_metric_and_wgs84(tmp_path):
    lon, lat = SCALA_LONLAT
    (tmp_path / "p.csv").write_text(HEADER + f"s,Scala,Nightclub,Culture,{lon},{lat}\n")
    pois = _normalise(_london_like().with_snapshot_path("p.csv"), tmp_path).pois
    assert abs(pois["x_m"].iloc[0] - SCALA_BNG[0]) < 1.0
    assert abs(pois["y_m"].iloc[0] - SCALA_BNG[1]) < 1.0
    assert (pois["lon"].iloc[0], pois["lat"].iloc[0]) == (lon, lat)


def test_metric_source_coordinates_give_wgs84_back(tmp_path):
    x, y = SCALA_BNG
    (tmp_path / "p.csv").write_text(f"id,cat,e,n\ns,nightclub,{x},{y}\n")
    columns = ColumnMap(poi_id="id", category="cat", x="e", y="n", source_epsg=27700)
    pois = _normalise(_london_like(columns).with_snapshot_path("p.csv"), tmp_path).pois
    assert pois["lon"].iloc[0] == pytest.approx(SCALA_LONLAT[0], abs=2e-5)
    assert pois["lat"].iloc[0] == pytest.approx(SCALA_LONLAT[1], abs=2e-5)
    assert (pois["x_m"].iloc[0], pois["y_m"].iloc[0]) == (x, y)


def test_resolve_metric_epsg(tmp_path):
    city = synthetic.make_synthetic_city(tmp_path, n_pois=20, evaluation=False)
    raw = read_snapshot(Path(city.snapshot.path), city.snapshot)
    assert city.metric_epsg is None
    assert snapshot_metric_epsg(city, raw) == 32632
    assert snapshot_metric_epsg(_london_like(), raw) == 27700
    empty = raw.assign(lon=np.nan)
    assert snapshot_metric_epsg(city, empty) == 32632  # from bounds_wgs84's centre


# --------------------------------------------------------------------------- ingest


def test_ingest_city_writes_and_reports(tmp_path):
    city = synthetic.make_synthetic_city(
        tmp_path / "c", n_pois=N_POIS, bad_rows=True, evaluation=False
    )
    con = connect(tmp_path / "db" / "pois.duckdb")
    report = ingest_city(con, city, tmp_path)
    assert report.snapshot_hash == file_hash(Path(city.snapshot.path))
    assert report.metric_epsg == 32632
    assert report.seconds > 0 and report.source_path == city.snapshot.path
    assert len(store.read_city_pois(con, "synthetic")) == N_POIS
    assert len(store.read_quarantine(con, "synthetic")) == 8
    log = store.latest_ingest(con, "synthetic")
    assert log is not None and log["quarantined_by"] == synthetic.BAD_ROWS


def test_ingest_city_missing_snapshot(tmp_path):
    con = connect(tmp_path / "db.duckdb")
    city = _london_like().with_snapshot_path("absent.csv.gz")
    with pytest.raises(FileNotFoundError, match=r"absent\.csv\.gz"):
        ingest_city(con, city, tmp_path)


def test_ingest_of_nothing_valid_raises_and_keeps_the_store(tmp_path):
    (tmp_path / "p.csv").write_text(HEADER + "a,,cafe,food,,\n")
    con = connect(tmp_path / "db.duckdb")
    with pytest.raises(EmptySnapshotError):
        ingest_city(con, _london_like().with_snapshot_path("p.csv"), tmp_path)
    assert store.latest_ingest(con, "ldn") is None


# --------------------------------------------------------------------------- real London


def test_london_snapshot_counts(real_data_root, tmp_path):
    city = get_city("london")
    con = connect(tmp_path / "london.duckdb")
    report = ingest_city(con, city, real_data_root)
    merged = report.sources["london-pois-merged"]
    assert merged["rows_read"] == 95_079
    assert merged["filtered_by"] == {"is_duplicate": 21_041, "in_greater_london": 1_554}
    assert merged["rows_read"] - merged["rows_filtered_out"] == 72_484
    # 75 source_ids occur twice among the kept rows (same OSM object in two sources' extracts)
    assert merged["quarantined_by"] == {"duplicate id": 75}
    assert merged["rows_valid"] == 72_409
    # FSA FHRS: inside GL and within 2 km of its own borough, not within 25 m of a merged POI
    fhrs = report.sources["fhrs"]
    assert fhrs["rows_read"] == 61_774
    assert fhrs["filtered_by"] == {"in_greater_london": 179, "dist_to_own_la_m": 187}
    assert fhrs["rows_quarantined"] == 0
    assert fhrs["rows_duplicate"] == report.rows_duplicate == 38_133
    assert fhrs["rows_valid"] == 23_275
    assert report.rows_valid == 72_409 + 23_275
    assert report.metric_epsg == 27700

    everything = store.read_city_pois(con, "london")
    assert len(everything) == 95_684 and everything["poi_id"].is_unique
    assert everything.groupby("source").size().to_dict() == {
        "london-pois-merged": 72_409,
        "fhrs": 23_275,
    }
    assert everything.loc[everything["source"] == "fhrs", "poi_id"].str.startswith("fhrs:").all()
    pois = everything[everything["source"] == "london-pois-merged"]
    assert pois["description"].nunique() == 69
    scala = pois.loc[pois["poi_id"] == "londonbible:9012"].iloc[0]
    assert abs(scala["x_m"] - SCALA_BNG[0]) < 1.0 and abs(scala["y_m"] - SCALA_BNG[1]) < 1.0
    # the snapshot's own easting/northing (pyproj, rounded to 0.1 m) agree everywhere
    src = pd.read_csv(city.snapshot_path(real_data_root), usecols=["easting", "northing"])
    rows = pois["source_row"].to_numpy() - 1
    assert np.abs(pois["x_m"].to_numpy() - src["easting"].to_numpy()[rows]).max() < 0.06
    assert np.abs(pois["y_m"].to_numpy() - src["northing"].to_numpy()[rows]).max() < 0.06
