"""Reading OpenStreetMap data: an extract (``format = "osm"``: ``.osm.pbf``, ``.osm``,
``.osm.bz2`` ...) with pyosmium, or GeoJSON / GeoParquet exported by common OSM tools
(``format = "osm-geojson"`` / ``"osm-geoparquet"``).

Every reader gives one row per OSM object with the columns of
:data:`calliper_pipeline.cities.spec.OSM_COLUMNS`: ``osm_id`` (``node/123``, ``way/456``,
``relation/789``), ``name`` (the ``name`` tag), ``category`` and ``group`` (the tag mapping,
:mod:`.osm_mapping`), ``lon``/``lat`` (WGS84 degrees, EPSG:4326), plus ``osm_tag`` (the
``key=value`` that gave the category) and ``osm_tags`` (all tags as JSON).

Geometry: a node or Point is its own location. A way, area or other geometry is its centroid,
computed in metres: the geometries are projected to the WGS84 UTM zone (EPSG:326xx north /
327xx south) of the median of their bounding-box centres, ``shapely.centroid`` taken there,
and the centroid projected back to EPSG:4326 (:func:`centroids_wgs84`).

In a ``.osm.pbf``, pyosmium's ``FileProcessor`` with ``with_areas()`` keeps every node's
location in its in-memory location cache (``flex_mem``) and fills each way's node list with
them; a way is a LineString of those locations, a polygon when closed (first node = last,
at least four nodes); a multipolygon (or boundary) relation is the area pyosmium's area
assembler builds from its member ways (``osmium.geom.WKBFactory``). Rows are the nodes, ways
and relations with a tag matching the mapping (POIs, and those whose tags are all excluded),
and the nodes, closed ways and relation areas that carry a ``name`` but no POI tag (what the
mapping may have missed); unnamed objects without a POI tag (buildings, roads, way nodes) and
named lines (streets, rivers) are not POIs and not rows.

In a GeoJSON / GeoParquet export every feature is a row. Tags are read as the tools write
them: flat properties (``osmium export``, Overpass turbo), a ``tags`` object (osmtogeojson),
columns plus an ``other_tags`` hstore text (GDAL's OSM driver, ogr2ogr, QuickOSM). The id is
taken from ``@id`` / the feature id (``node/1``, ``n1``), ``osm_type`` + ``osm_id``, or GDAL's
``osm_way_id`` / ``osm_id``; a feature without one gets the derived id of
:func:`.ids.stable_id` with source ``"osm"``.

Rows that are not POIs stay in place, marked for the quarantine (:mod:`.markers`):
``excluded OSM tag`` (field: the key), ``no POI tag`` (field ``tags``) and ``no geometry``
(a relation pyosmium could not build an area from, a way with nodes missing from the extract,
a feature without geometry; field ``geometry``), each with its id and tags as raw JSON.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from calliper_pipeline.cities.geo import transformer, utm_epsg
from calliper_pipeline.cities.spec import SnapshotSpec
from calliper_pipeline.constants import WGS84_EPSG
from calliper_pipeline.errors import SnapshotFormatError
from calliper_pipeline.ingest.ids import stable_id
from calliper_pipeline.ingest.markers import COL_READ_FIELD, COL_READ_RAW, COL_READ_REASON
from calliper_pipeline.ingest.osm_mapping import (
    REASON_EXCLUDED_TAG,
    REASON_NO_POI_TAG,
    OsmMapping,
    source_mapping,
)
from calliper_pipeline.ingest.readers import _open_text

REASON_NO_GEOMETRY = "no geometry"
#: Source name salting the derived ids of features without an OSM id.
OSM_ID_SOURCE = "osm"
#: Properties of OSM exports that are not tags (ids, metadata, GDAL's hstore, nested tags).
_META = frozenset({"id", "osm_id", "osm_type", "osm_way_id", "other_tags", "tags", "meta"})
_ID_LONG = re.compile(r"(node|way|relation)/(\d+)")
_ID_SHORT = re.compile(r"([nwr])(\d+)")
_TYPES = {"n": "node", "w": "way", "r": "relation"}
_HSTORE = re.compile(r'"((?:[^"\\]|\\.)*)"\s*=>\s*"((?:[^"\\]|\\.)*)"')
_UNESCAPE = re.compile(r"\\(.)")


@dataclass(frozen=True)
class OsmObject:
    """One OSM object as read: its id (None: unknown), tags and WGS84 geometry (or None)."""

    osm_id: str | None
    tags: dict[str, str]
    geometry: Any


def read_osm(path: Path, fmt: str, spec: SnapshotSpec) -> pd.DataFrame:
    """The rows of an OSM file (see the module docstring), ``spec.osm`` tuning the mapping.

    Raises:
        SnapshotFormatError: the file cannot be read as ``fmt``, or holds no object that is
            a row.
    """
    mapping = source_mapping(spec.osm)
    if fmt == "osm":
        objects = read_pbf_objects(path, mapping)
    elif fmt == "osm-geojson":
        objects = read_geojson_objects(path)
    else:
        objects = read_geoparquet_objects(path)
    if not objects:
        raise SnapshotFormatError(
            str(path),
            f"no OSM object with a POI tag or a name (keys read: {', '.join(mapping.keys)})",
        )
    return osm_frame(objects, mapping)


# --------------------------------------------------------------------------- .osm.pbf


def _way_geometry(way: Any) -> Any:
    import shapely

    nodes = list(way.nodes)
    if not nodes or not all(n.location.valid() for n in nodes):
        return None  # nodes outside the extract
    coords = [(n.lon, n.lat) for n in nodes]
    if way.is_closed() and len(coords) >= 4:
        return shapely.Polygon(coords)
    return shapely.LineString(coords) if len(coords) >= 2 else shapely.Point(coords[0])


def _is_row(mapping: OsmMapping, tags: Mapping[str, str], linear: bool) -> bool:
    if mapping.classify(tags).reason != REASON_NO_POI_TAG:
        return True
    return "name" in tags and not linear


def _pbf_geometry(obj: Any, wkb: Any) -> tuple[str, Any, bool] | None:
    """(OSM id, WGS84 geometry or None, whether a line) of a node, way or relation's area;
    None for an area built from a way (the way is the row) and for anything else."""
    import osmium
    import shapely

    if isinstance(obj, osmium.osm.Node):
        loc = obj.location
        return f"node/{obj.id}", shapely.Point(loc.lon, loc.lat) if loc.valid() else None, False
    if isinstance(obj, osmium.osm.Way):
        return f"way/{obj.id}", _way_geometry(obj), not obj.is_closed()
    if isinstance(obj, osmium.osm.Area) and not obj.from_way():
        try:
            geom = shapely.from_wkb(wkb.create_multipolygon(obj))
        except RuntimeError:  # an invalid ring: counted as "no geometry"
            geom = None
        return f"relation/{obj.orig_id()}", geom, False
    return None


def read_pbf_objects(path: Path, mapping: OsmMapping) -> list[OsmObject]:
    """The row objects of an OSM file pyosmium reads (``.osm.pbf``, ``.osm``, ``.osm.bz2``)."""
    import osmium

    keys = (*mapping.tag_keys, "name")
    wkb = osmium.geom.WKBFactory()
    objects: list[OsmObject] = []
    relations: dict[int, dict[str, str]] = {}
    areas: set[str] = set()
    try:
        processor = (
            osmium.FileProcessor(str(path))
            .with_areas(osmium.filter.KeyFilter(*keys))
            .with_filter(osmium.filter.KeyFilter(*keys))
        )
        for obj in processor:
            tags = {t.k: t.v for t in obj.tags}
            if isinstance(obj, osmium.osm.Relation):
                relations[obj.id] = tags
                continue
            found = _pbf_geometry(obj, wkb)
            if found is None:
                continue
            osm_id, geom, linear = found
            areas.add(osm_id)
            if _is_row(mapping, tags, linear):
                objects.append(OsmObject(osm_id, tags, geom))
    except RuntimeError as exc:
        raise SnapshotFormatError(str(path), f"unreadable OSM file: {exc}") from exc
    for rid, tags in relations.items():  # relations without an area: counted, not lost
        if f"relation/{rid}" not in areas and _is_row(mapping, tags, linear=True):
            objects.append(OsmObject(f"relation/{rid}", tags, None))
    return objects


# --------------------------------------------------------------------------- GeoJSON / GeoParquet


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def parse_osm_id(value: Any) -> str | None:
    """``node/1`` from ``"node/1"`` or ``"n1"`` (way, relation alike); else None."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if m := _ID_LONG.fullmatch(text):
        return f"{m[1]}/{m[2]}"
    if m := _ID_SHORT.fullmatch(text):
        return f"{_TYPES[m[1]]}/{m[2]}"
    return None


def _number(value: Any) -> str | None:
    if not _present(value):
        return None
    text = str(value).strip().removesuffix(".0")  # 123.0 from a float column
    return text if text.isdigit() else None


def feature_osm_id(feature_id: Any, props: Mapping[str, Any], geom: Any) -> str | None:
    """The OSM id of an exported feature (see the module docstring), or None."""
    for candidate in (props.get("@id"), feature_id):
        if parsed := parse_osm_id(candidate):
            return parsed
    kind = str(props.get("osm_type") or props.get("type") or "").strip().lower()
    kind = _TYPES.get(kind[:1], "") if kind in ("node", "way", "relation", "n", "w", "r") else ""
    number = _number(props.get("osm_id", props.get("id") if "tags" in props else None))
    if kind and number:
        return f"{kind}/{number}"
    if way := _number(props.get("osm_way_id")):
        return f"way/{way}"
    if number:  # GDAL's OSM driver: osm_id of a point is a node's, of a polygon a relation's
        return f"{'node' if getattr(geom, 'geom_type', '') == 'Point' else 'relation'}/{number}"
    return None


def _tag_map(value: Any) -> dict[str, Any]:
    """A ``tags`` value: a mapping, a JSON object text, or key/value pairs (Arrow maps)."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        try:
            obj = json.loads(value)
        except json.JSONDecodeError:
            return {}
        return obj if isinstance(obj, dict) else {}
    if isinstance(value, list | tuple | np.ndarray):
        return {str(k): v for k, v in (p for p in value if len(p) == 2)}
    return {}


def parse_hstore(text: str) -> dict[str, str]:
    """GDAL's ``other_tags`` (``"a"=>"b","c"=>"d"``) as a dict (``\\"`` / ``\\\\`` unescaped)."""

    pairs = _HSTORE.findall(text)
    return {_UNESCAPE.sub(r"\1", k): _UNESCAPE.sub(r"\1", v) for k, v in pairs}


def feature_tags(props: Mapping[str, Any]) -> dict[str, str]:
    """The OSM tags of an exported feature's properties (see the module docstring)."""
    nested = props.get("tags")
    if _present(nested):
        tags = _tag_map(nested)
        if tags or isinstance(nested, Mapping):
            return {str(k): str(v) for k, v in tags.items() if _present(v)}
    tags = {
        str(k): v
        for k, v in props.items()
        if k not in _META and not str(k).startswith("@") and _present(v)
    }
    other = props.get("other_tags")
    if isinstance(other, str):
        tags.update({k: v for k, v in parse_hstore(other).items() if k not in tags})
    return {k: v if isinstance(v, str) else str(v) for k, v in tags.items()}


def read_geojson_objects(path: Path) -> list[OsmObject]:
    """The features of an OSM GeoJSON export (RFC 7946: WGS84 degrees; gzip allowed)."""
    import shapely.geometry

    try:
        with _open_text(path) as fh:
            doc = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise SnapshotFormatError(str(path), f"unreadable GeoJSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("features"), list):
        raise SnapshotFormatError(str(path), "not a GeoJSON FeatureCollection (no features list)")
    crs = json.dumps(doc.get("crs") or "")
    if doc.get("crs") and "4326" not in crs and "CRS84" not in crs:
        raise SnapshotFormatError(
            str(path), f"declares the CRS {crs}: reproject it to WGS84 (EPSG:4326)", field="crs"
        )
    objects = []
    for i, feature in enumerate(doc["features"], start=1):
        if not isinstance(feature, dict):
            raise SnapshotFormatError(str(path), "a feature is not a JSON object", row=i)
        props = feature.get("properties") or {}
        try:
            geom = shapely.geometry.shape(feature["geometry"]) if feature.get("geometry") else None
        except (KeyError, TypeError, ValueError, AttributeError, shapely.errors.ShapelyError):
            geom = None  # quarantined as "no geometry"
        objects.append(
            OsmObject(feature_osm_id(feature.get("id"), props, geom), feature_tags(props), geom)
        )
    return objects


def read_geoparquet_objects(path: Path) -> list[OsmObject]:
    """The rows of an OSM GeoParquet export, reprojected to EPSG:4326 when in another CRS."""
    import geopandas as gpd
    from pyproj import CRS

    try:
        gdf = gpd.read_parquet(path)
    except Exception as exc:
        raise SnapshotFormatError(str(path), f"unreadable GeoParquet: {exc}") from exc
    if gdf.crs is not None and not CRS(gdf.crs).equals(CRS.from_epsg(WGS84_EPSG)):
        gdf = gdf.to_crs(WGS84_EPSG)
    geoms = [None if g is None or g.is_empty else g for g in gdf.geometry]
    frame = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
    records = [{str(k): v for k, v in r.items()} for r in frame.to_dict("records")]
    return [
        OsmObject(feature_osm_id(None, props, g), feature_tags(props), g)
        for props, g in zip(records, geoms, strict=True)
    ]


# --------------------------------------------------------------------------- rows


def centroids_wgs84(geoms: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """WGS84 lon, lat (degrees) of each geometry: a Point's own, else its centroid in metres.

    Non-point geometries are projected to the UTM zone of the median of their bounding-box
    centres (latitude clamped to the UTM range), their centroids taken there and projected
    back to EPSG:4326. None or empty geometries give NaN.
    """
    import shapely

    arr = np.array([g if g is not None and not g.is_empty else None for g in geoms], dtype=object)
    lon = np.full(len(arr), np.nan)
    lat = np.full(len(arr), np.nan)
    kind = shapely.get_type_id(arr)
    point = kind == 0
    lon[point], lat[point] = shapely.get_x(arr[point]), shapely.get_y(arr[point])
    other = kind > 0
    if other.any():
        box = shapely.bounds(arr[other])
        centre_lon = float(np.median((box[:, 0] + box[:, 2]) / 2))
        centre_lat = float(np.clip(np.median((box[:, 1] + box[:, 3]) / 2), -80.0, 84.0))
        epsg = utm_epsg(centre_lon, centre_lat)
        forward, back = transformer(WGS84_EPSG, epsg), transformer(epsg, WGS84_EPSG)
        metric = shapely.transform(
            arr[other], lambda xy: np.column_stack(forward.transform(xy[:, 0], xy[:, 1]))
        )
        centre = shapely.centroid(metric)
        lon[other], lat[other] = back.transform(shapely.get_x(centre), shapely.get_y(centre))
    return lon, lat


def _text(values: list[Any]) -> pd.Series:
    return pd.Series(values, dtype=object)


def osm_frame(objects: list[OsmObject], mapping: OsmMapping) -> pd.DataFrame:
    """One row per object: the OSM columns, the non-POIs marked for the quarantine."""
    matches = [mapping.classify(o.tags) for o in objects]
    lon, lat = centroids_wgs84([o.geometry for o in objects])
    names = [(o.tags.get("name") or "").strip() or None for o in objects]
    ids = [
        o.osm_id or stable_id(OSM_ID_SOURCE, n, m.category, x, y)
        for o, m, n, x, y in zip(objects, matches, names, lon, lat, strict=True)
    ]
    reasons: list[str | None] = []
    fields: list[str | None] = []
    for m, x in zip(matches, lon, strict=True):
        if m.reason == REASON_EXCLUDED_TAG:
            reasons.append(m.reason)
            fields.append((m.tag or "").split("=", 1)[0])
        elif m.reason is not None:
            reasons.append(m.reason)
            fields.append("tags")
        elif not np.isfinite(x):
            reasons.append(REASON_NO_GEOMETRY)
            fields.append("geometry")
        else:
            reasons.append(None)
            fields.append(None)
    tags_json = [json.dumps(o.tags, ensure_ascii=False, sort_keys=True) for o in objects]
    raw = [
        None if r is None else json.dumps({"osm_id": i, "tags": o.tags}, ensure_ascii=False)
        for r, i, o in zip(reasons, ids, objects, strict=True)
    ]
    return pd.DataFrame(
        {
            "osm_id": _text(ids),
            "name": _text(names),
            "category": _text([m.category for m in matches]),
            "group": _text([m.group for m in matches]),
            "osm_tag": _text([m.tag for m in matches]),
            "osm_tags": _text(tags_json),
            "lon": lon,
            "lat": lat,
            COL_READ_REASON: _text(reasons),
            COL_READ_FIELD: _text(fields),
            COL_READ_RAW: _text(raw),
        }
    )
