"""OpenStreetMap sources: a ``.osm.pbf`` (also ``.osm`` / ``.osm.bz2``) read with pyosmium, and
GeoJSON / GeoParquet as osmium export, Overpass turbo, osmtogeojson and GDAL write them; the
non-POIs counted in the ingest report and quarantined with their tags."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely

from calliper_pipeline.cities.spec import OSM_COLUMNS, SnapshotSpec, load_city_file
from calliper_pipeline.errors import SnapshotFormatError
from calliper_pipeline.ingest.ingest import ingest_city
from calliper_pipeline.ingest.osm import centroids_wgs84, feature_osm_id, parse_hstore
from calliper_pipeline.ingest.readers import read_snapshot
from calliper_pipeline.store import pois as store
from calliper_pipeline.store.db import connect
from tests.support.osm import write_osm

D = 0.001  # degrees: one side of the L-shaped building's squares
LON0, LAT0 = 10.0, 50.0
# an L of three D x D squares: its centroid is (5/6 D, 5/6 D) from the corner, not the
# bounding box's centre (D, D) nor the mean of its vertices
L_SHAPE = [(0, 0), (2, 0), (2, 1), (1, 1), (1, 2), (0, 2)]
L_CENTROID = (LON0 + 5 / 6 * D, LAT0 + 5 / 6 * D)


def _extract(path: Path) -> Path:
    corners = [(100 + i, LON0 + x * D, LAT0 + y * D, {}) for i, (x, y) in enumerate(L_SHAPE)]
    square = [(200 + i, LON0 + 0.01 + x * D, LAT0 + y * D, {}) for i, (x, y) in enumerate(
        [(0, 0), (1, 0), (1, 1), (0, 1)])]  # fmt: skip
    nodes = [
        (1, 10.01, 50.01, {"amenity": "fast_food", "name": "Chip Inn", "cuisine": "fish"}),
        (2, 10.02, 50.01, {"amenity": "bench"}),  # excluded by default
        (3, 10.03, 50.01, {"place": "square", "name": "Market Square"}),  # named, no POI tag
        (4, 10.04, 50.01, {"highway": "crossing"}),  # no name, no POI tag: not a row
        (5, 10.05, 50.01, {"railway": "station", "name": "Town"}),
        *corners,
        *square,
    ]
    ways = [
        (10, [*range(100, 106), 100], {"shop": "supermarket", "name": "Big Shop"}),
        (11, [100, 101, 102], {"highway": "residential", "name": "High St"}),  # a named line
        (12, [100, 999], {"amenity": "toilets"}),  # node 999 is not in the extract
        (13, [200, 201, 202, 203, 200], {"building": "yes"}),  # an outer ring, no tags of note
    ]
    relations = [
        (20, [("w", 13, "outer")], {"type": "multipolygon", "leisure": "park", "name": "Green"}),
        (21, [("n", 1, "")], {"type": "site", "amenity": "school"}),  # not an area
    ]
    return write_osm(path, nodes, ways, relations)


@pytest.mark.parametrize("name", ["town.osm.pbf", "town.osm", "town.osm.bz2"])
def test_osm_extract_gives_nodes_and_way_and_area_centroids(tmp_path: Path, name: str) -> None:
    path = _extract(tmp_path / name)
    df = read_snapshot(path, SnapshotSpec(path=name, columns=OSM_COLUMNS))  # format by suffix
    rows = df.set_index("osm_id")
    assert list(rows.index) == [
        "node/1", "node/2", "node/3", "node/5", "way/10", "way/12", "relation/20", "relation/21",
    ]  # fmt: skip
    assert rows.loc["node/1", ["name", "category", "group", "osm_tag"]].tolist() == [
        "Chip Inn", "fast food", "eating and drinking", "amenity=fast_food",
    ]  # fmt: skip
    assert (rows.loc["node/1", "lon"], rows.loc["node/1", "lat"]) == (10.01, 50.01)
    assert json.loads(rows.loc["node/1", "osm_tags"])["cuisine"] == "fish"
    assert rows.loc["node/5", ["category", "group"]].tolist() == ["station", "transport"]
    shop = rows.loc["way/10"]
    assert (shop["category"], shop["group"]) == ("supermarket", "food shops")
    assert shop["lon"] == pytest.approx(L_CENTROID[0], abs=1e-7)  # ~1 cm
    assert shop["lat"] == pytest.approx(L_CENTROID[1], abs=1e-7)
    assert abs(shop["lon"] - (LON0 + D)) > 1e-4  # not the bounding box's centre
    park = rows.loc["relation/20"]
    assert (park["category"], park["group"]) == ("park", "parks and green spaces")
    assert park["lon"] == pytest.approx(LON0 + 0.01 + D / 2, abs=1e-7)
    assert park["lat"] == pytest.approx(LAT0 + D / 2, abs=1e-7)
    reasons = rows["__calliper_read_reason"].to_dict()
    assert reasons == {
        "node/1": None, "node/2": "excluded OSM tag", "node/3": "no POI tag", "node/5": None,
        "way/10": None, "way/12": "no geometry", "relation/20": None,
        "relation/21": "no geometry",
    }  # fmt: skip
    assert rows.loc["node/2", "__calliper_read_field"] == "amenity"
    assert json.loads(rows.loc["node/3", "__calliper_read_raw"]) == {
        "osm_id": "node/3", "tags": {"place": "square", "name": "Market Square"},
    }  # fmt: skip


def test_overrides_from_the_source_change_the_rows(tmp_path: Path) -> None:
    path = _extract(tmp_path / "t.osm.pbf")
    osm = {"keys": ["amenity"], "exclude": [], "categories": {"amenity=bench": ["seat", "rest"]}}
    df = read_snapshot(path, SnapshotSpec(path="t", columns=OSM_COLUMNS, format="osm", osm=osm))
    rows = df.set_index("osm_id")
    assert rows.loc["node/2", ["category", "group"]].tolist() == ["seat", "rest"]
    # railway and shop are no POI keys now: the named station and shop say so, the rest go
    assert rows.loc["node/5", "__calliper_read_reason"] == "no POI tag"
    assert rows.loc["way/10", "__calliper_read_reason"] == "no POI tag"


CITY = """\
key = "osm_town"
name = "OSM town"
bounds_wgs84 = [9.99, 49.99, 10.1, 50.1]

[snapshot]
path = "{path}"
{extra}
"""


def test_ingest_counts_and_quarantines_what_is_not_a_poi(tmp_path: Path) -> None:
    _extract(tmp_path / "town.osm.pbf")
    toml = tmp_path / "town.toml"
    toml.write_text(CITY.format(path="town.osm.pbf", extra=""))
    city = load_city_file(toml)
    with connect(tmp_path / "w.duckdb") as con:
        report = ingest_city(con, city, tmp_path)
        pois = store.read_city_pois(con, city.key)
        quarantine = store.read_quarantine(con, city.key)
    assert report.rows_read == 8 and report.rows_valid == 4
    assert report.quarantined_by == {"excluded OSM tag": 1, "no POI tag": 1, "no geometry": 2}
    assert sorted(pois["poi_id"]) == ["node/1", "node/5", "relation/20", "way/10"]
    by_id = pois.set_index("poi_id")
    assert by_id.loc["node/1", "name"] == "Chip Inn"
    assert by_id.loc["node/1", "description"].lower() == (
        "a place of fast food, a type of eating and drinking"
    )
    bench = quarantine[quarantine["reason"] == "excluded OSM tag"].iloc[0]
    assert bench["field"] == "amenity" and json.loads(bench["raw_json"])["osm_id"] == "node/2"


# --------------------------------------------------------------------------- exports

POINT = {"type": "Point", "coordinates": [10.01, 50.01]}
SQUARE = {
    "type": "Polygon",
    "coordinates": [[[10.02, 50.02], [10.022, 50.02], [10.022, 50.022], [10.02, 50.022],
                     [10.02, 50.02]]],
}  # fmt: skip


def _feature(props: dict, geometry: dict | None = POINT, fid: object = None) -> dict:
    f = {"type": "Feature", "properties": props, "geometry": geometry}
    return f if fid is None else {**f, "id": fid}


EXPORTS = {
    # osmium export (flat tags; --add-unique-id=type_id gives "n1" / "w2")
    "osmium": [
        _feature({"amenity": "cafe", "name": "Bean"}, fid="n1"),
        _feature({"shop": "bakery"}, SQUARE, fid="w2"),
    ],
    # Overpass turbo (flat tags, "@id")
    "overpass": [
        _feature({"@id": "node/1", "amenity": "cafe", "name": "Bean"}, fid="node/1"),
        _feature({"@id": "way/2", "shop": "bakery"}, SQUARE, fid="way/2"),
    ],
    # osmtogeojson (nested tags)
    "osmtogeojson": [
        _feature({"type": "node", "id": 1, "tags": {"amenity": "cafe", "name": "Bean"}}),
        _feature({"type": "way", "id": 2, "tags": {"shop": "bakery"}, "meta": {}}, SQUARE),
    ],
    # GDAL's OSM driver through ogr2ogr (points: osm_id of a node; multipolygons: osm_way_id)
    "gdal": [
        _feature({"osm_id": "1", "name": "Bean", "other_tags": '"amenity"=>"cafe"'}),
        _feature({"osm_id": None, "osm_way_id": "2", "shop": "bakery", "other_tags": None}, SQUARE),
    ],
}


@pytest.mark.parametrize("tool", sorted(EXPORTS))
def test_osm_geojson_exports_of_common_tools(tmp_path: Path, tool: str) -> None:
    path = tmp_path / "pois.geojson"
    features = [
        *EXPORTS[tool],
        _feature({"amenity": "waste_basket"}),
        _feature({"building": "yes"}, SQUARE),
        _feature({"amenity": "pub"}, None),
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    df = read_snapshot(path, SnapshotSpec(path="p", columns=OSM_COLUMNS, format="osm-geojson"))
    assert df["osm_id"].tolist()[:2] == ["node/1", "way/2"]
    assert df["name"].tolist()[:2] == ["Bean", None]
    assert df["category"].tolist()[:2] == ["cafe", "bakery"]
    assert df["group"].tolist()[:2] == ["eating and drinking", "food shops"]
    assert (df["lon"][0], df["lat"][0]) == (10.01, 50.01)
    assert df["lon"][1] == pytest.approx(10.021, abs=1e-7)
    assert df["lat"][1] == pytest.approx(50.021, abs=1e-6)
    assert df["__calliper_read_reason"].tolist()[2:] == [
        "excluded OSM tag", "no POI tag", "no geometry",
    ]  # fmt: skip
    assert df["osm_id"][2] != df["osm_id"][3]  # no OSM id: a derived, distinct id


def test_osm_geoparquet_in_a_projected_crs_is_reprojected(tmp_path: Path) -> None:
    """A QuickOSM-like layer: tag columns, osm_id + osm_type, EPSG:3857 polygons."""
    square = shapely.geometry.shape(SQUARE)
    gdf = gpd.GeoDataFrame(
        {
            "osm_id": [1, 2],
            "osm_type": ["node", "way"],
            "name": ["Bean", None],
            "amenity": ["cafe", None],
            "shop": [None, "bakery"],
            "tags": [None, None],
        },
        geometry=[shapely.Point(10.01, 50.01), square],
        crs=4326,
    ).to_crs(3857)
    path = tmp_path / "pois.parquet"
    gdf.to_parquet(path)
    spec = SnapshotSpec(path="p", columns=OSM_COLUMNS, format="osm-geoparquet")
    df = read_snapshot(path, spec)
    assert df["osm_id"].tolist() == ["node/1", "way/2"]
    assert df["category"].tolist() == ["cafe", "bakery"]
    assert df["lon"][0] == pytest.approx(10.01, abs=1e-9)
    assert df["lon"][1] == pytest.approx(10.021, abs=1e-7)


def test_helpers_read_ids_and_hstore() -> None:
    assert parse_hstore(r'"a"=>"b","name"=>"Say \"hi\"","c"=>"x\\y"') == {
        "a": "b", "name": 'Say "hi"', "c": "x\\y",
    }  # fmt: skip
    point, poly = shapely.Point(0, 0), shapely.geometry.shape(SQUARE)
    assert feature_osm_id("r7", {}, poly) == "relation/7"
    assert feature_osm_id(None, {"osm_id": 7.0}, poly) == "relation/7"  # GDAL multipolygon
    assert feature_osm_id(None, {"osm_id": "7"}, point) == "node/7"
    assert feature_osm_id(None, {"osm_type": "way", "osm_id": 7}, point) == "way/7"
    assert feature_osm_id(12, {}, point) is None  # a counter is no OSM id
    lon, lat = centroids_wgs84([None, shapely.Point(1, 2), shapely.Polygon()])
    assert np.isnan(lon[0]) and (lon[1], lat[1]) == (1, 2) and np.isnan(lat[2])


def test_unreadable_osm_files_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.osm.pbf"
    bad.write_bytes(b"not a pbf")
    with pytest.raises(SnapshotFormatError, match=r"bad\.osm\.pbf: unreadable OSM file"):
        read_snapshot(bad, SnapshotSpec(path="p", columns=OSM_COLUMNS))
    empty = write_osm(tmp_path / "empty.osm.pbf", [(1, 10.0, 50.0, {"highway": "crossing"})])
    with pytest.raises(SnapshotFormatError, match="no OSM object with a POI tag or a name"):
        read_snapshot(empty, SnapshotSpec(path="p", columns=OSM_COLUMNS))
    gj = tmp_path / "p.geojson"
    gj.write_text('{"type": "Feature"}')
    with pytest.raises(SnapshotFormatError, match="not a GeoJSON FeatureCollection"):
        read_snapshot(gj, SnapshotSpec(path="p", columns=OSM_COLUMNS, format="osm-geojson"))
    gj.write_text(json.dumps({"type": "FeatureCollection", "features": [],
                              "crs": {"properties": {"name": "EPSG:3857"}}}))  # fmt: skip
    with pytest.raises(SnapshotFormatError, match="reproject it to WGS84"):
        read_snapshot(gj, SnapshotSpec(path="p", columns=OSM_COLUMNS, format="osm-geojson"))
