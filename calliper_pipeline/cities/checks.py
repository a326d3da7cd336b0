"""Checks of a city file's values, run when the file is loaded (:func:`.spec.load_city_file`).

Each check raises a one-line :class:`ConfigError` that names the field (``snapshot.format``,
``bounds_wgs84``, ``sources[1].columns``, ...) and says what is wrong; the caller prefixes the
file's path. Nothing here reads a data file: checks against the POIs themselves (bounds that
hold none of them) happen at ingest (:func:`check_bounds_hold_points`).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from calliper_pipeline.errors import ConfigError

#: ``format`` values a city file may name (None / absent: from the file's suffix).
#: Canonical names first; ``csv.gz``, ``pq`` and ``ndjson`` are aliases. Gzip-compressed CSV
#: and JSON lines are recognised by their ``.gz`` suffix whatever the format says.
SNAPSHOT_FORMAT_NAMES = (
    "csv",
    "geojson",
    "parquet",
    "geoparquet",
    "jsonl",
    *("osm", "osm-geojson", "osm-geoparquet"),
)
SNAPSHOT_FORMAT_ALIASES = {"csv.gz": "csv", "pq": "parquet", "ndjson": "jsonl", "jsonl.gz": "jsonl"}
#: Formats read as OpenStreetMap data: tags mapped to category and group
#: (:mod:`calliper_pipeline.ingest.osm`); their column map is fixed, ``[snapshot.osm]`` tunes it.
OSM_FORMATS = ("osm", "osm-geojson", "osm-geoparquet")
#: File names read as ``format = "osm"`` when the city file names no format.
OSM_SUFFIXES = (".osm.pbf", ".pbf", ".osm", ".osm.bz2", ".osm.gz", ".o5m")
#: Keys of a source's ``[snapshot.osm]`` table (see ``calliper_pipeline/ingest/osm_tags.toml``).
OSM_TABLE_KEYS = ("keys", "exclude", "categories", "groups")
_OSM_ENTRY = re.compile(r"[^=\s]+(=[^=]+)?")

BOUNDS_ORDER = "[min_lon, min_lat, max_lon, max_lat]"


def check_keys(table: Any, allowed: Iterable[str], where: str) -> Mapping[str, Any]:
    """``table`` if it is a table whose keys are all in ``allowed``, else ConfigError.

    The message names the first unknown key as ``<where>.<key>`` (``where`` "" for the top
    level) and suggests the closest allowed key.
    """
    label = where or "the file"
    if not isinstance(table, Mapping):
        raise ConfigError(f"{label}: expected a table, got {type(table).__name__}")
    allowed = sorted(allowed)
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            name = f"{where}.{key}" if where else str(key)
            raise ConfigError(f"{name}: unknown key{hint}; allowed: {', '.join(allowed)}")
    return table


def check_format(value: Any, where: str) -> str | None:
    """The canonical format named by ``value`` (None: from the suffix), else ConfigError."""
    if value is None:
        return None
    text = str(value).lower()
    if text in SNAPSHOT_FORMAT_NAMES:
        return text
    if text in SNAPSHOT_FORMAT_ALIASES:
        return SNAPSHOT_FORMAT_ALIASES[text]
    if text == "json":
        raise ConfigError(
            f"{where}: 'json' is ambiguous: use 'jsonl' for one JSON object per line "
            "(also .ndjson, gzip allowed) or 'geojson' for a GeoJSON FeatureCollection"
        )
    names = ", ".join([*SNAPSHOT_FORMAT_NAMES, *SNAPSHOT_FORMAT_ALIASES])
    raise ConfigError(f"{where}: unknown format {value!r}; use one of {names} (or omit it)")


def check_columns(columns: Any, where: str) -> None:
    """A column map needs ``category`` and both of lon/lat or x/y (or neither: geometry)."""
    if "category" not in columns:
        raise ConfigError(f"{where}.category: required (the column holding each POI's category)")
    for a, b in (("lon", "lat"), ("x", "y")):
        if (a in columns) != (b in columns):
            missing = b if a in columns else a
            raise ConfigError(f"{where}.{missing}: required with {a if a in columns else b}")
    for key, value in columns.items():
        if key == "source_epsg":
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{where}.source_epsg: an EPSG code (integer), got {value!r}")
        elif not isinstance(value, str) or not value:
            raise ConfigError(f"{where}.{key}: a column name (text), got {value!r}")


def check_queries(value: Any, where: str = "retrieval_queries") -> tuple[str, ...]:
    """``value`` as a tuple of non-empty texts, else ConfigError."""
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(q, str) and q.strip() for q in value
    ):
        raise ConfigError(f"{where}: expected a list of non-empty texts, got {value!r}")
    return tuple(q.strip() for q in value)


def check_bounds(value: Any, where: str = "bounds_wgs84") -> tuple[float, float, float, float]:
    """``value`` as (min_lon, min_lat, max_lon, max_lat) degrees, else ConfigError saying why.

    Refused: not four finite numbers; a longitude outside [-180, 180] or a latitude outside
    [-90, 90] (when swapping each pair would fit, the message says lat/lon look swapped); a
    minimum not below its maximum (the message says which pair is reversed).
    """
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 4
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        or not all(math.isfinite(v) for v in value)
    ):
        raise ConfigError(f"{where}: expected four finite numbers {BOUNDS_ORDER}, got {value!r}")
    min_lon, min_lat, max_lon, max_lat = (float(v) for v in value)
    lon_ok = all(-180 <= v <= 180 for v in (min_lon, max_lon))
    lat_ok = all(-90 <= v <= 90 for v in (min_lat, max_lat))
    if not lat_ok:
        swapped = all(-90 <= v <= 90 for v in (min_lon, max_lon))
        hint = ": lat/lon look swapped" if swapped else ""
        raise ConfigError(
            f"{where}: latitude {min_lat:g} / {max_lat:g} outside [-90, 90]{hint}; "
            f"write {BOUNDS_ORDER}, got {list(value)}"
        )
    if not lon_ok:
        raise ConfigError(
            f"{where}: longitude {min_lon:g} / {max_lon:g} outside [-180, 180]; "
            f"write {BOUNDS_ORDER}, got {list(value)}"
        )
    for name, lo, hi in (("lon", min_lon, max_lon), ("lat", min_lat, max_lat)):
        if not lo < hi:
            raise ConfigError(
                f"{where}: min_{name} {lo:g} is not below max_{name} {hi:g} (min and max "
                f"swapped?); write {BOUNDS_ORDER}, got {list(value)}"
            )
    return (min_lon, min_lat, max_lon, max_lat)


def _share_inside(
    bounds: tuple[float, float, float, float], lon: np.ndarray, lat: np.ndarray
) -> float:
    min_lon, min_lat, max_lon, max_lat = bounds
    inside = (lon >= min_lon) & (lon <= max_lon) & (lat >= min_lat) & (lat <= max_lat)
    return float(inside.mean()) if len(lon) else 0.0


def check_bounds_hold_points(
    bounds: tuple[float, float, float, float] | None,
    lon: np.ndarray,
    lat: np.ndarray,
    where: str,
) -> None:
    """ConfigError when ``bounds_wgs84`` holds none of the POIs but the box with lon and lat
    swapped (``[min_lat, min_lon, max_lat, max_lon]`` read as written) holds most of them.

    ``lon``/``lat``: the POIs' finite WGS84 coordinates. Cities whose bounds hold some POIs,
    and boxes that a swap would not explain, are left to per-row quarantine.
    """
    if bounds is None or len(lon) == 0:
        return
    if _share_inside(bounds, lon, lat) > 0:
        return
    b = bounds
    if _share_inside((b[1], b[0], b[3], b[2]), lon, lat) >= 0.5:
        raise ConfigError(
            f"{where}: bounds_wgs84 {list(bounds)} holds none of the POIs, but with lat and lon "
            f"swapped it holds most of them: either the bounds are written latitude first "
            f"(write {BOUNDS_ORDER}, e.g. [{b[1]:g}, {b[0]:g}, {b[3]:g}, {b[2]:g}]) or the "
            "POI file's latitude and longitude are exchanged (exchange the two column names "
            "in the source's columns of the city file)"
        )


def osm_format_of(path: str, fmt: str | None) -> str | None:
    """``fmt``, or ``"osm"`` when none is named and ``path`` ends in an OSM suffix."""
    if fmt is None and path.lower().endswith(OSM_SUFFIXES):
        return "osm"
    return fmt


def _osm_entries(value: Any, where: str, what: str) -> list[str]:
    if not isinstance(value, list) or not all(
        isinstance(v, str) and _OSM_ENTRY.fullmatch(v) for v in value
    ):
        raise ConfigError(
            f'{where}: expected a list of {what} ("amenity" or "amenity=pub"), got {value!r}'
        )
    return list(value)


def check_osm(table: Any, fmt: str | None, where: str) -> dict[str, Any]:
    """A source's ``[snapshot.osm]`` table, checked (field paths in the messages).

    ``keys`` and ``exclude``: lists of ``key`` or ``key=value`` entries; ``categories``: a
    table of ``"key=value" = [category, group]``; ``groups``: a table of ``key`` or
    ``"key=value"`` = group. Only for the OSM formats (:data:`OSM_FORMATS`).
    """
    osm = dict(check_keys(table, OSM_TABLE_KEYS, where))
    if fmt not in OSM_FORMATS:
        raise ConfigError(
            f"{where}: only for OpenStreetMap sources (format = one of {', '.join(OSM_FORMATS)}), "
            f"but the format is {fmt!r}"
        )
    if "keys" in osm:
        osm["keys"] = _osm_entries(osm["keys"], f"{where}.keys", "keys or key=value tags")
        if not osm["keys"]:
            raise ConfigError(f"{where}.keys: needs at least one key")
    if "exclude" in osm:
        osm["exclude"] = _osm_entries(osm["exclude"], f"{where}.exclude", "keys or tags")
    for name in ("categories", "groups"):
        if name in osm and not isinstance(osm[name], Mapping):
            raise ConfigError(f"{where}.{name}: expected a table, got {osm[name]!r}")
    for tag, pair in osm.get("categories", {}).items():
        if "=" not in tag or not _OSM_ENTRY.fullmatch(tag):
            raise ConfigError(f'{where}.categories."{tag}": the key must be a key=value tag')
        if not (
            isinstance(pair, list)
            and len(pair) == 2
            and all(isinstance(v, str) and v.strip() for v in pair)
        ):
            raise ConfigError(
                f'{where}.categories."{tag}": expected [category, group] (two texts), got {pair!r}'
            )
    for tag, group in osm.get("groups", {}).items():
        if not _OSM_ENTRY.fullmatch(tag):
            raise ConfigError(f'{where}.groups."{tag}": the key must be a key or key=value tag')
        if not isinstance(group, str) or not group.strip():
            raise ConfigError(
                f'{where}.groups."{tag}": expected a group name (text), got {group!r}'
            )
    return osm
