"""A generated corpus of bad POI input files, each with the exact outcome an ingest must give.

Every :class:`Case` writes one source file under a folder and names what ``ingest_city`` must
do with it: the rows stored, the rows quarantined per reason, the rows cleaned and the
warnings, or the one-line error it raises (a regular expression of the whole message, with
``{path}`` standing for the file). The files are built from :func:`good_rows`: ``N_GOOD`` POIs
inside the synthetic city's bounds (:mod:`tests.support.synthetic`, metric CRS EPSG:32632),
three categories, every POI at its own place, so a case without bad rows is a clean city
that draws no warning. Cases cover CSV, gzip CSV, GeoJSON and Parquet: bad values, bad
structure, bad encodings, degenerate cities and hostile strings.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from calliper_pipeline.cities.spec import CitySpec, ColumnMap, SnapshotSpec
from tests.support import synthetic

N_GOOD = 1100  # more than one training batch (1024): a clean case draws no warning
KEY = "corpus"
COLUMNS = ColumnMap(poi_id="id", name="name", category="cat", group="grp", lon="lon", lat="lat")
HEADER = ["id", "name", "cat", "grp", "lon", "lat"]
CATEGORIES = (("cafe", "food"), ("school", "education"), ("park", "leisure"))
HOSTILE_NAMES = (
    "Robert'); DROP TABLE pois;--",
    "{category} {name} {0} %s %(x)s",
    '=HYPERLINK("http://x","y")',
    "<script>alert(1)</script>",
    "\u202eevil\u202c right-to-left",
    "Caf\u00e9 \U0001f600 \u4e2d\u6587 \u0645\u0631\u062d\u0628\u0627",
    "x" * 10_000,
    "../../etc/passwd",
)

# Outcomes shared by many cases.
ALL = N_GOOD
BATCH_WARNING = r"\d+ POIs, fewer than one training batch \(1,024\)"


def good_rows(n: int = N_GOOD) -> pd.DataFrame:
    """``n`` valid POIs as text: id, name, cat, grp, lon, lat (7 decimals), one place each."""
    lon0, lat0, lon1, lat1 = synthetic.bounds_wgs84()
    rng = np.random.default_rng(7)
    lon = rng.uniform(lon0 + 0.01, lon1 - 0.01, n)
    lat = rng.uniform(lat0 + 0.01, lat1 - 0.01, n)
    cats = [CATEGORIES[i % len(CATEGORIES)] for i in range(n)]
    return pd.DataFrame(
        {
            "id": [f"p{i}" for i in range(n)],
            "name": [f"Place {i}" for i in range(n)],
            "cat": [c for c, _ in cats],
            "grp": [g for _, g in cats],
            "lon": [f"{v:.7f}" for v in lon],
            "lat": [f"{v:.7f}" for v in lat],
        }
    )


def city(path: Path, **snapshot_options: Any) -> CitySpec:
    """The corpus city reading ``path`` (absolute) with the given snapshot options."""
    columns = snapshot_options.pop("columns", COLUMNS)
    snapshot = SnapshotSpec(path=str(path), columns=columns, **snapshot_options)
    return CitySpec(
        key=KEY,
        name="Bad-input corpus",
        snapshot=snapshot,
        metric_epsg=synthetic.METRIC_EPSG,
        bounds_wgs84=synthetic.bounds_wgs84(),
    )


def city_toml(path: Path, **snapshot_options: str) -> str:
    """The corpus city as a city file (for the CLI)."""
    q = json.dumps
    lines = [f"key = {q(KEY)}", 'name = "Bad-input corpus"']
    lines.append(f"metric_epsg = {synthetic.METRIC_EPSG}")
    lines.append(f"bounds_wgs84 = [{', '.join(repr(v) for v in synthetic.bounds_wgs84())}]")
    lines += ["", "[snapshot]", f"path = {q(str(path))}"]
    lines += [f"{k} = {q(v)}" for k, v in snapshot_options.items()]
    lines += ["", "[snapshot.columns]"]
    for fld in ("poi_id", "name", "category", "group", "lon", "lat"):
        lines.append(f"{fld} = {q(getattr(COLUMNS, fld))}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- writers


def csv_text(
    rows: pd.DataFrame | list[list[str]], header: list[str] | None = None, delimiter: str = ","
) -> str:
    """Delimited text (comma by default), fields quoted where needed, LF line ends."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", delimiter=delimiter)
    writer.writerow(header or HEADER)
    writer.writerows(rows.to_numpy().tolist() if isinstance(rows, pd.DataFrame) else rows)
    return out.getvalue()


def write_text(name: str, text: str, encoding: str = "utf-8") -> Callable[[Path], Path]:
    def write(root: Path) -> Path:
        path = root / name
        path.write_bytes(text.encode(encoding))
        return path

    return write


def write_bytes(name: str, data: bytes) -> Callable[[Path], Path]:
    def write(root: Path) -> Path:
        path = root / name
        path.write_bytes(data)
        return path

    return write


def write_gzip(name: str, text: str, encoding: str = "utf-8") -> Callable[[Path], Path]:
    return write_bytes(name, gzip.compress(text.encode(encoding), mtime=0))


def with_rows(*extra: list[str], rows: pd.DataFrame | None = None) -> str:
    """The good rows (or ``rows``) followed by ``extra`` rows, as CSV text."""
    base = (good_rows() if rows is None else rows).to_numpy().tolist()
    return csv_text([*base, *map(list, extra)])


def write_geojson(
    name: str, features: list[dict[str, Any]], crs: int | None = None
) -> Callable[[Path], Path]:
    def write(root: Path) -> Path:
        doc: dict[str, Any] = {"type": "FeatureCollection", "features": features}
        if crs is not None:
            doc["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{crs}"}}
        path = root / name
        path.write_text(json.dumps(doc), encoding="utf-8")
        return path

    return write


def point_features(rows: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    rows = good_rows() if rows is None else rows
    return [
        {
            "type": "Feature",
            "properties": {k: r[k] for k in ("id", "name", "cat", "grp")},
            "geometry": {"type": "Point", "coordinates": [float(r["lon"]), float(r["lat"])]},
        }
        for _, r in rows.iterrows()
    ]


def feature(fid: str, geometry: dict[str, Any] | None) -> dict[str, Any]:
    props = {"id": fid, "name": None, "cat": "cafe", "grp": "food"}
    return {"type": "Feature", "properties": props, "geometry": geometry}


def write_parquet(name: str, frame: pd.DataFrame) -> Callable[[Path], Path]:
    def write(root: Path) -> Path:
        path = root / name
        frame.to_parquet(path, index=False)
        return path

    return write


def numeric(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.astype({"lon": float, "lat": float})


def projected(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with lon/lat replaced by EPSG:32632 metres (x, y)."""
    from calliper_pipeline.cities.geo import project

    x, y = project(
        rows["lon"].astype(float).to_numpy(), rows["lat"].astype(float).to_numpy(), 4326, 32632
    )
    return rows.assign(lon=[f"{v:.2f}" for v in x], lat=[f"{v:.2f}" for v in y])


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    """One bad input and its exact outcome (``error`` set: the ingest must refuse the file)."""

    name: str
    fmt: str
    write: Callable[[Path], Path]
    valid: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    cleaned: dict[str, int] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()  # regular expressions, one per warning, in order
    error: str | None = None  # regular expression of the whole one-line message
    options: dict[str, Any] = field(default_factory=dict)  # snapshot options (city file)
    stored: dict[str, str] = field(default_factory=dict)  # poi_id -> stored name

    def error_pattern(self, path: Path) -> str:
        assert self.error is not None
        return self.error.replace("{path}", re.escape(str(path)))


def _bad_value_cases() -> list[Case]:
    g = good_rows()
    return [
        Case("csv_unparseable_lat", "csv",
             write_text("p.csv", with_rows(["x1", "", "cafe", "food", "10.0", "abc"])),
             valid=ALL, quarantined={"unparseable coordinates": 1}),
        Case("csv_unparseable_both_columns", "csv",
             write_text("p.csv", with_rows(["x1", "", "cafe", "food", "10.0.1", "50.0"],
                                           ["x2", "", "cafe", "food", "10.0", "5O.0"],
                                           ["x3", "", "cafe", "food", "1e", "50.0"])),
             valid=ALL, quarantined={"unparseable coordinates": 3}),
        Case("csv_missing_and_nonfinite", "csv",
             write_text("p.csv", with_rows(["x1", "", "cafe", "food", "10.0", ""],
                                           ["x2", "", "cafe", "food", "NaN", "50.0"],
                                           ["x3", "", "cafe", "food", "inf", "50.0"],
                                           ["x4", "", "cafe", "food", "10.0", "-Infinity"])),
             valid=ALL,
             quarantined={"missing coordinates": 2, "non-finite coordinates": 2}),
        Case("csv_outside_bounds_and_impossible_lat", "csv",
             write_text("p.csv", with_rows(["x1", "", "cafe", "food", "-0.1", "51.5"],
                                           ["x2", "", "cafe", "food", "10.0", "95.0"])),
             valid=ALL,
             quarantined={"outside city bounds": 2}),
        Case("csv_missing_id_category_duplicate", "csv",
             write_text("p.csv", with_rows(["", "", "cafe", "food", "10.0", "50.0"],
                                           ["x2", "", "", "food", "10.0", "50.0"],
                                           ["p0", "", "cafe", "food", "10.0", "50.0"])),
             valid=ALL,
             quarantined={"missing id": 1, "missing category": 1, "duplicate id": 1}),
        Case("csv_mostly_decimal_commas", "csv",
             write_text("p.csv", csv_text(g.assign(lon=g["lon"].str.replace(".", ","),
                                                   lat=g["lat"].str.replace(".", ",")))),
             error=r"{path}, row 1, field 'lon': coordinates use decimal commas \(1100 values "
                   r"such as '\d+,\d+'\): add decimal = \",\" to its source entry in the city "
                   r"file"),
        Case("csv_all_rows_invalid", "csv",
             write_text("p.csv", csv_text([["a", "", "cafe", "food", "east", "north"],
                                          ["b", "", "cafe", "food", "west", "south"]])),
             error=r"{path}: no valid POI: 2 rows read, 0 valid, 0 filtered out \{\}, 2 "
                   r"quarantined \{'unparseable coordinates': 2\}"),
        Case("csv_swapped_lat_lon", "csv",
             write_text("p.csv", csv_text(g.assign(lon=g["lat"], lat=g["lon"]))),
             # a bounding-box city: the bounds check of ingest sees it first and names both
             # fixes (a city with a boundary file gets the per-source check's message)
             error=r"corpus: bounds_wgs84 \[9\.88, 49\.92, 10\.12, 50\.08\] holds none of "
                   r"the POIs, but with lat and lon swapped it holds most of them: either the "
                   r"bounds are written latitude first .* or the POI file's latitude and "
                   r"longitude are exchanged \(exchange the two column names in the source's "
                   r"columns of the city file\)"),
        Case("csv_decimal_comma_declared", "csv",
             write_text("p.csv", csv_text(g.assign(lon=g["lon"].str.replace(".", ","),
                                                   lat=g["lat"].str.replace(".", ",")),
                                          delimiter=";")),
             options={"delimiter": ";", "decimal": ","}, valid=ALL),
        Case("csv_decimal_comma_declared_with_garbage", "csv",
             write_text("p.csv", csv_text([*g.assign(lon=g["lon"].str.replace(".", ","))
                                           .to_numpy().tolist(),
                                           ["x1", "", "cafe", "food", "10,0", "fifty"]],
                                          delimiter=";")),
             options={"delimiter": ";", "decimal": ","}, valid=ALL,
             quarantined={"unparseable coordinates": 1}),
    ]  # fmt: skip


def _structure_cases() -> list[Case]:
    g = good_rows()
    return [
        Case("csv_ragged_long_row", "csv",
             write_text("p.csv", with_rows(["x1", "", "cafe", "food", "10.0", "50.0", "extra"])),
             valid=ALL, quarantined={"ragged row": 1}),
        Case("csv_ragged_short_rows", "csv",
             write_text("p.csv", with_rows(["x1", "", "cafe", "food", "10.0"], ["x2"])),
             valid=ALL, quarantined={"ragged row": 2}),
        Case("csv_unclosed_quote_in_last_row", "csv",
             write_text("p.csv", with_rows() + 'x1,"Open quote,cafe,food,10.0,50.0\n'),
             valid=ALL, quarantined={"ragged row": 1}),
        Case("csv_blank_lines_and_crlf", "csv",
             write_text("p.csv", with_rows().replace("\n", "\r\n\r\n")),
             valid=ALL),
        Case("csv_header_only", "csv", write_text("p.csv", ",".join(HEADER) + "\n"),
             error=r"{path}: no valid POI: 0 rows read, 0 valid, 0 filtered out \{\}, 0 "
                   r"quarantined \{\}"),
        Case("csv_empty_file", "csv", write_text("p.csv", ""),
             error=r"{path}: empty file \(no header row\)"),
        Case("csv_blank_lines_only", "csv", write_text("p.csv", "\n\n\n"),
             error=r"{path}: empty file \(no header row\)"),
        Case("csv_missing_category_column", "csv",
             write_text("p.csv", csv_text(g.drop(columns="cat"), [*HEADER[:2], *HEADER[3:]])),
             error=r"{path}, field 'cat': missing required column\(s\) \['cat'\]; the file has "
                   r"\['id', 'name', 'grp', 'lon', 'lat'\]"),
        Case("csv_semicolon_delimiter", "csv",
             write_text("p.csv", with_rows().replace(",", ";")),
             error=r"{path}: the header is one column 'id;name;cat;grp;lon;lat': the file looks "
                   r"';'-separated; add delimiter = \";\" to its source entry in the city file"),
        Case("csv_tab_delimiter", "csv",
             write_text("p.tsv.csv", with_rows().replace(",", "\t")),
             error=r"{path}: the header is one column 'id\\tname\\tcat\\tgrp\\tlon\\tlat': the "
                   r"file looks '\\t'-separated; add delimiter = \"\\t\" to its source entry in "
                   r"the city file"),
        Case("csv_semicolon_declared", "csv",
             write_text("p.csv", with_rows().replace(",", ";")),
             options={"delimiter": ";"}, valid=ALL),
        Case("gzip_truncated", "csv.gz",
             write_bytes("p.csv.gz", gzip.compress(with_rows().encode(), mtime=0)[:200]),
             error=r"{path}: unreadable file: Compressed file ended before the end-of-stream "
                   r"marker was reached"),
        Case("gzip_ragged_and_unparseable", "csv.gz",
             write_gzip("p.csv.gz", with_rows(["x1", "", "cafe", "food", "10.0", "abc"],
                                              ["x2", "", "cafe", "food"])),
             valid=ALL, quarantined={"ragged row": 1, "unparseable coordinates": 1}),
        Case("geojson_polygon_and_multipoint", "geojson",
             write_geojson("p.geojson", [
                 *point_features(),
                 feature("poly", {"type": "Polygon",
                                  "coordinates": [[[10, 50], [10.01, 50], [10, 50.01], [10, 50]]]}),
                 feature("multi", {"type": "MultiPoint", "coordinates": [[10, 50], [10.01, 50]]}),
             ]),
             valid=ALL, quarantined={"not a point": 2}),
        Case("geojson_null_geometry", "geojson",
             write_geojson("p.geojson", [*point_features(), feature("nothing", None)]),
             valid=ALL, quarantined={"missing coordinates": 1}),
        Case("geojson_projected_crs_declared", "geojson",
             write_geojson("p.geojson", point_features(projected(g)), crs=32632),
             valid=ALL),
        Case("geojson_projected_crs_undeclared", "geojson",
             write_geojson("p.geojson", point_features(projected(g))),
             error=r"{path}, field 'geometry': 1100 of 1100 points are not degrees \(e\.g\. "
                   r"x=\d+\.\d, y=\d+\.\d\), but the file's CRS is EPSG:4326 \(GeoJSON's default "
                   r"when it declares none\): the coordinates look projected; reproject the file "
                   r"to EPSG:4326 or declare its CRS"),
        Case("geojson_truncated_json", "geojson",
             write_bytes("p.geojson", json.dumps({"type": "FeatureCollection",
                                                  "features": point_features()}).encode()[:500]),
             error=r"{path}: unreadable geojson: .+"),
        Case("parquet_text_coordinates_with_garbage", "parquet",
             write_parquet("p.parquet", pd.concat([g, pd.DataFrame(
                 [["x1", None, "cafe", "food", "10.0", "n/a?"]], columns=HEADER)],
                 ignore_index=True)),
             valid=ALL, quarantined={"unparseable coordinates": 1}),
        Case("parquet_boolean_coordinate_column", "parquet",
             write_parquet("p.parquet", numeric(g).assign(lat=True)),
             error=r"{path}, field 'lat': coordinate column has type bool, not a number"),
        Case("parquet_garbage_bytes", "parquet",
             write_bytes("p.parquet", b"PAR1 this is not parquet"),
             error=r"{path}: not a readable Parquet file: .+"),
        Case("parquet_missing_columns", "parquet",
             write_parquet("p.parquet", numeric(g).drop(columns=["lon", "lat"])),
             error=r"{path}, field 'lon': missing required column\(s\) \['lon', 'lat'\]; the "
                   r"file has \['id', 'name', 'cat', 'grp'\]"),
    ]  # fmt: skip


def _encoding_cases() -> list[Case]:
    rows = good_rows()
    rows.loc[499, "name"] = "Café Müller"
    latin = csv_text(rows)
    offset = latin.encode("latin-1").index("é".encode("latin-1"))
    return [
        Case("csv_latin1_undeclared", "csv", write_text("p.csv", latin, "latin-1"),
             error=rf"{{path}}: not UTF-8 text: byte 0xe9 at byte offset {offset} \(line 501\); "
                   r"if the file is in another encoding, add encoding = \"cp1252\" \(or "
                   r"\"latin-1\"\) to its source entry in the city file"),
        Case("csv_latin1_declared", "csv", write_text("p.csv", latin, "latin-1"),
             options={"encoding": "latin-1"}, valid=ALL, stored={"p499": "Café Müller"}),
        Case("gzip_latin1_undeclared", "csv.gz", write_gzip("p.csv.gz", latin, "latin-1"),
             error=rf"{{path}}: not UTF-8 text: byte 0xe9 at byte offset {offset} \(line 501\); "
                   r"if the file is in another encoding, add encoding = \"cp1252\" \(or "
                   r"\"latin-1\"\) to its source entry in the city file"),
        Case("csv_utf16", "csv", write_text("p.csv", with_rows(), "utf-16"),
             error=r"{path}: the file is UTF-16 \(byte-order mark\): add encoding = \"utf-16\" "
                   r"to its source entry"),
        Case("csv_utf16_declared", "csv", write_text("p.csv", with_rows(), "utf-16"),
             options={"encoding": "utf-16"}, valid=ALL),
        Case("csv_utf8_bom", "csv", write_text("p.csv", "\ufeff" + with_rows()), valid=ALL),
        Case("csv_unknown_encoding_declared", "csv", write_text("p.csv", with_rows()),
             options={"encoding": "klingon-8"},
             error=r"{path}: unknown encoding 'klingon-8' in the city file"),
    ]  # fmt: skip


def _hostile_cases() -> list[Case]:
    rows = good_rows()
    for i, name in enumerate(HOSTILE_NAMES):
        rows.loc[i, "name"] = name
    nul = good_rows()
    nul.loc[0, "name"] = "Caf\x00e"
    nul.loc[1, "name"] = "Tab\there\r\nnewline"
    nul.loc[2, "cat"] = "\x01\x02"  # nothing left: a missing category
    nul.loc[3, "id"] = "p3\x00"
    parquet = numeric(good_rows())
    parquet.loc[0, "cat"] = "ca\x00fe\x7f"
    parquet.loc[1, "name"] = "\x00"
    return [
        Case("csv_hostile_names_stored_verbatim", "csv", write_text("p.csv", csv_text(rows)),
             valid=ALL, stored={f"p{i}": n for i, n in enumerate(HOSTILE_NAMES)}),
        Case("csv_nul_and_control_characters", "csv", write_text("p.csv", csv_text(nul)),
             valid=ALL - 1, quarantined={"missing category": 1},
             cleaned={"control characters stripped": 4},
             stored={"p0": "Cafe", "p1": "Tab here newline", "p3": "Place 3"}),
        Case("parquet_nul_in_category_and_name", "parquet", write_parquet("p.parquet", parquet),
             valid=ALL, cleaned={"control characters stripped": 2}, stored={"p0": "Place 0"}),
        Case("geojson_nul_and_control_characters", "geojson",
             write_geojson("p.geojson", point_features(nul)),
             valid=ALL - 1, quarantined={"missing category": 1},
             cleaned={"control characters stripped": 4},
             stored={"p0": "Cafe", "p1": "Tab here newline", "p3": "Place 3"}),
        Case("geojson_hostile_names", "geojson",
             write_geojson("p.geojson", point_features(rows)),
             valid=ALL, stored={f"p{i}": n for i, n in enumerate(HOSTILE_NAMES)}),
    ]  # fmt: skip


def _degenerate_cases() -> list[Case]:
    g = good_rows()
    one_place = g.assign(lon="10.0000000", lat="50.0000000").iloc[:3].assign(cat="cafe")
    stacked = g.assign(lon=np.where(np.arange(len(g)) % 2, "10.0", "10.01"), lat="50.0")
    return [
        Case("degenerate_three_rows", "csv", write_text("p.csv", csv_text(one_place)),
             valid=3,
             warnings=(r"3 POIs, fewer than one training batch \(1,024\)",
                       r"one category only \('cafe'\): nothing to contrast",
                       r"all 3 POIs lie at 1 distinct place\(s\) \(to the metre\)")),
        Case("degenerate_one_category", "parquet",
             write_parquet("p.parquet", numeric(g).assign(cat="cafe", grp="food")),
             valid=ALL, warnings=(r"one category only \('cafe'\): nothing to contrast",)),
        Case("degenerate_two_places", "csv", write_text("p.csv", csv_text(stacked)),
             valid=ALL,
             warnings=(r"all 1,100 POIs lie at 2 distinct place\(s\) \(to the metre\)",)),
        Case("degenerate_few_rows_geojson", "geojson",
             write_geojson("p.geojson", point_features(g.iloc[:50])),
             valid=50, warnings=(BATCH_WARNING,)),
    ]  # fmt: skip


def cases() -> list[Case]:
    """Every corpus case (names are unique)."""
    out = [
        *_bad_value_cases(),
        *_structure_cases(),
        *_encoding_cases(),
        *_hostile_cases(),
        *_degenerate_cases(),
    ]
    assert len({c.name for c in out}) == len(out)
    return out
