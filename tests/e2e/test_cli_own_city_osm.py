"""Bring your own city as an OpenStreetMap extract: a ``.osm.pbf`` with only a bounding box (no
labels, no column map) goes through ``calliper run`` once, gets ``@champion`` through the
label-free gate (v1, no incumbent; the JSON-lines test covers a second version measured against
the first), and ``calliper embed`` from that champion keeps the input's columns.

The extract is real OSM data: the POIs of ``london-osm-propsearch`` (OSM nodes and ways from
Overpass, with their ids, names and tags; ODbL, © OpenStreetMap contributors) inside a box of
central London, read at test time and written as a ``.osm.pbf`` with pyosmium. Every tenth POI
is written as a closed way (a ~20 m rectangle centred on it) so that way centroids are
exercised; benches (excluded by default: counted and quarantined) and an unnamed footway (not a
POI, not a row) are added.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from calliper_pipeline.constants import COL_GROUP
from calliper_pipeline.store import pois as store
from calliper_pipeline.store.city_store import for_home
from tests.support.osm import write_osm
from tests.support.own_city import (
    Own,
    check_embed_keeps_input_columns,
    check_label_free_champion,
    own_city_runs,
)

pytestmark = pytest.mark.slow  # one tiny city_refresh run: ~50 s on 2 busy cores

KEY = "camden"
MODEL = f"calliper_{KEY}"
BOX = (-0.16, 51.49, -0.06, 51.54)  # min_lon, min_lat, max_lon, max_lat (degrees, EPSG:4326)
N_BENCHES = 40
HALF_SIDE_DEG = 0.00009  # about 10 m of latitude: the ways are ~20 m squares
CITY_TOML = """\
key = "camden"
name = "Camden"
bounds_wgs84 = [{bounds}]  # min_lon, min_lat, max_lon, max_lat (degrees)
attribution = "© OpenStreetMap contributors, ODbL 1.0"

[snapshot]
path = "camden/camden.osm.pbf"  # format = "osm" from the suffix; no [snapshot.columns]
"""


def _propsearch_subset(root: Path) -> pd.DataFrame:
    src = root / "london-osm-propsearch" / "london_pois.json.gz"
    if not src.is_file():
        pytest.skip(f"{src} not found (set CALLIPER_DATA_ROOT)")
    with gzip.open(src, "rt", encoding="utf-8") as fh:
        pois = pd.DataFrame(json.load(fh))
    inside = pois["lng"].between(BOX[0], BOX[2]) & pois["lat"].between(BOX[1], BOX[3])
    return pois.loc[inside].reset_index(drop=True)


def _write_extract(pois: pd.DataFrame, path: Path) -> dict[str, Any]:
    """The POIs as nodes (every tenth as a closed way), plus benches and a road."""
    nodes, ways = [], []
    next_id = 10**12  # above any real OSM node id
    way_centres: dict[str, tuple[float, float]] = {}
    for i, row in enumerate(pois.itertuples(index=False)):
        tags = {str(k): str(v) for k, v in row.tags.items()}
        if row.name:
            tags["name"] = str(row.name)
        if i % 10 == 0:
            refs = []
            for dx, dy in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                next_id += 1
                nodes.append((next_id, row.lng + 1.6 * dx * HALF_SIDE_DEG,
                              row.lat + dy * HALF_SIDE_DEG, {}))  # fmt: skip
                refs.append(next_id)
            ways.append((int(row.id), [*refs, refs[0]], tags))
            way_centres[f"way/{int(row.id)}"] = (float(row.lng), float(row.lat))
        else:
            nodes.append((int(row.id), float(row.lng), float(row.lat), tags))
    for j in range(N_BENCHES):
        row = pois.iloc[j * 7]
        next_id += 1
        nodes.append((next_id, row["lng"] + 1e-4, row["lat"], {"amenity": "bench"}))
    ways.append((next_id + 1, [nodes[-1][0], nodes[-2][0]], {"highway": "footway"}))
    nodes.sort(key=lambda n: n[0])
    ways.sort(key=lambda w: w[0])
    write_osm(path, nodes, ways)
    return {"pois": len(pois), "way_centres": way_centres}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory, real_data_root: Path) -> Iterator[tuple]:
    root = tmp_path_factory.mktemp("own_city_osm")
    data = root / "data"
    (data / KEY).mkdir(parents=True)
    counts = _write_extract(_propsearch_subset(real_data_root), data / KEY / "camden.osm.pbf")
    toml = root / "camden.toml"
    toml.write_text(CITY_TOML.format(bounds=", ".join(map(str, BOX))), encoding="utf-8")
    with own_city_runs(root, KEY, data, toml, runs=1) as own:
        yield own, counts


@pytest.fixture(scope="module")
def own(written: tuple) -> Own:
    return written[0]


def test_both_runs_succeed_and_ingest_every_poi_of_the_extract(written: tuple) -> None:
    own, counts = written
    assert own.statuses == [0], own.out
    with for_home(own.home).connect(KEY, read_only=True) as con:
        pois = store.read_city_pois(con, KEY)
        quarantine = store.read_quarantine(con, KEY)
        log = store.latest_ingest(con, KEY)
    assert log is not None and log["quarantined_by"] == {"excluded OSM tag": N_BENCHES}
    # every propsearch POI inside the box is a valid POI (its tags all map), nothing else
    assert len(pois) == counts["pois"]
    assert pois["poi_id"].str.fullmatch(r"(node|way)/\d+").all()
    # a way is a point at its centroid (computed in UTM metres): the rectangle's centre
    ways = pois.set_index("poi_id").loc[list(counts["way_centres"])]
    centres = pd.DataFrame(counts["way_centres"], index=["lon", "lat"]).T
    assert (pois["poi_id"].str.startswith("way/")).sum() == len(centres) > 100
    assert (ways[["lon", "lat"]] - centres).abs().max().max() < 1e-7  # degrees, ~1 cm
    assert quarantine["reason"].value_counts().to_dict() == {"excluded OSM tag": N_BENCHES}
    assert pois["lon"].between(BOX[0], BOX[2]).all() and pois["lat"].between(BOX[1], BOX[3]).all()
    top = pois["category"].value_counts()
    assert top.index[0] == "cafe" and {"convenience", "station", "clinic"} <= set(top.index)
    cafe = pois.loc[pois["category"] == "cafe", COL_GROUP].unique().tolist()
    assert cafe == ["eating and drinking"]


def test_the_label_free_gate_gives_the_city_a_champion(own: Own) -> None:
    check_label_free_champion(own, MODEL, runs=1)


def test_embed_from_the_champion_keeps_the_input_columns(own: Own) -> None:
    check_embed_keeps_input_columns(own, MODEL, -0.11, 51.515)
