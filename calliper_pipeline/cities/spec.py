"""City registry: what a city is, where its data lives, how its columns map to ours.

A city is configuration, not code: one TOML file per city (the built-in ones live in
``calliper_pipeline/cities/configs/``; users add theirs with :func:`load_city_registry`'s
``extra_paths``). Paths inside a city file are relative to the *data root* the caller passes
(never the working directory); absolute paths are used as they are.

A city has one primary POI source (``[snapshot]``) and optionally more (``[[sources]]``
tables, merged in order after the primary; see :class:`SourceSpec`).

City keys name folders and database rows, so only ``[a-z][a-z0-9_]{0,63}`` is accepted
(:func:`validate_city_key`); anything else (``../../x``) is refused when a file is parsed.

Units: ``bounds_wgs84`` is (min_lon, min_lat, max_lon, max_lat) in degrees, EPSG:4326;
``bounds_m`` is (min_x, min_y, max_x, max_y) in metres of ``metric_epsg``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from calliper_pipeline.cities.checks import (
    OSM_FORMATS,
    check_bounds,
    check_columns,
    check_format,
    check_keys,
    check_osm,
    check_queries,
    osm_format_of,
)
from calliper_pipeline.constants import WGS84_EPSG
from calliper_pipeline.errors import ConfigError

BUILTIN_CITY_DIR = Path(__file__).parent / "configs"

DEFAULT_TEMPLATE = "A place of {category}, a type of {group}"
DEFAULT_NAME_TEMPLATE = "{name}, a place of {category}, a type of {group}"
#: Source name of the primary snapshot when ``[snapshot]`` has no ``name``.
DEFAULT_PRIMARY_SOURCE = "primary"

CITY_KEY_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")
SOURCE_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
#: Keys of a range filter table (``column = { max = 2000 }``); see :func:`filter_columns`.
RANGE_FILTER_KEYS = frozenset({"min", "max", "in", "not_in", "except_when"})


def validate_city_key(key: Any, where: str = "city") -> str:
    """``key`` if it is a valid city key (``[a-z][a-z0-9_]{0,63}``), else ConfigError.

    ``where`` (a file name, or "city") starts the error message.
    """
    if not isinstance(key, str) or not CITY_KEY_PATTERN.fullmatch(key):
        raise ConfigError(
            f"{where}: invalid city key {key!r}: use a lower-case letter followed by up to 63 "
            "lower-case letters, digits or underscores"
        )
    return key


def filter_columns(filters: Mapping[str, Any]) -> list[str]:
    """Every column a filter map reads, in order (filter columns and ``except_when`` ones).

    A filter value is either a scalar (keep rows equal to it; text ``true``/``1`` equal
    ``true``) or a table with any of ``min``, ``max`` (inclusive numeric range), ``in``,
    ``not_in`` (lists of values) and ``except_when`` (a map of column = value: rows matching
    all of it are kept whatever the rest of the table says).

    Raises:
        ConfigError: a filter table has an unknown key or a malformed value.
    """
    cols: list[str] = []
    for col, wanted in filters.items():
        cols.append(col)
        if not isinstance(wanted, Mapping):
            continue
        unknown = set(wanted) - RANGE_FILTER_KEYS
        if unknown or not wanted:
            raise ConfigError(
                f"filter {col!r}: unknown key(s) {sorted(unknown)}; use {sorted(RANGE_FILTER_KEYS)}"
            )
        for key in ("in", "not_in"):
            if key in wanted and not isinstance(wanted[key], list):
                raise ConfigError(f"filter {col!r}: {key} must be a list")
        exc = wanted.get("except_when", {})
        if not isinstance(exc, Mapping) or any(isinstance(v, Mapping) for v in exc.values()):
            raise ConfigError(f"filter {col!r}: except_when must map columns to values")
        cols.extend(exc)
    return list(dict.fromkeys(cols))


@dataclass(frozen=True)
class ColumnMap:
    """Which source columns hold each POI field.

    Either ``lon``/``lat`` or ``x``/``y`` must be given; ``source_epsg`` says the CRS of the
    coordinate columns (4326 for lon/lat). ``poi_id`` None: a stable id derived from source,
    name, category and rounded WGS84 coordinates (:mod:`calliper_pipeline.ingest.ids`).
    """

    category: str
    group: str | None = None
    poi_id: str | None = None
    name: str | None = None
    lon: str | None = None
    lat: str | None = None
    x: str | None = None
    y: str | None = None
    source_epsg: int = WGS84_EPSG

    def coordinate_columns(self) -> tuple[str, str]:
        """The (first, second) coordinate columns: lon/lat if given, else x/y."""
        if self.lon and self.lat:
            return self.lon, self.lat
        if self.x and self.y:
            return self.x, self.y
        raise ConfigError("column map needs lon/lat or x/y columns")


#: The columns an OpenStreetMap reader gives (:mod:`calliper_pipeline.ingest.osm`): the OSM id
#: (``node/123``, ``way/456``), the ``name`` tag, the mapped category and group, and WGS84
#: degrees (EPSG:4326) of the node or of the way's / area's centroid.
OSM_COLUMNS = ColumnMap(
    poi_id="osm_id", name="name", category="category", group="group", lon="lon", lat="lat"
)


@dataclass(frozen=True)
class SnapshotSpec:
    """A city's POI snapshot file and how to read it.

    ``filters`` keeps only the rows that pass every filter (see :func:`filter_columns`, e.g.
    ``is_duplicate = false``); rows filtered out are counted in the ingestion report, not
    silently lost. ``name`` is the source's name in the ``pois.source`` column (the primary
    snapshot defaults to :data:`DEFAULT_PRIMARY_SOURCE`).

    CSV reading options: ``encoding`` (a Python codec name; None: UTF-8), ``delimiter`` (one
    character; None: ``,``) and ``decimal`` (the coordinates' decimal mark; None: ``.``).

    OpenStreetMap sources (``format`` osm, osm-geojson, osm-geoparquet) have the fixed column
    map :data:`OSM_COLUMNS`; ``osm`` holds their ``[snapshot.osm]`` overrides of the default
    tag mapping (:mod:`calliper_pipeline.ingest.osm_mapping`).
    """

    path: str
    columns: ColumnMap
    # csv | geojson | parquet | geoparquet | jsonl | osm | osm-geojson | osm-geoparquet;
    # None: from the suffix
    format: str | None = None
    filters: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None
    encoding: str | None = None
    delimiter: str | None = None
    decimal: str | None = None
    osm: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceSpec(SnapshotSpec):
    """An additional POI source (a ``[[sources]]`` table), merged after the primary snapshot.

    ``name`` is required; ids become ``"<name>:<id>"`` so they stay unique across sources.
    ``description_template`` / ``name_template`` replace the city's templates for this
    source's POIs (None: the city's). ``dedupe_within_m``: a POI of this source is dropped
    (and counted) as a duplicate when it lies within that many metres of a POI already merged
    (the primary's and earlier sources'); None keeps all.
    """

    description_template: str | None = None
    name_template: str | None = None
    dedupe_within_m: float | None = None


@dataclass(frozen=True)
class EvaluationSpec:
    """Downstream evaluation sets (all optional; a city without them skips evaluation)."""

    landuse_path: str | None = None
    landuse_label_column: str = "landuse_id"
    landuse_name_column: str = "landuse"
    socioeconomic_path: str | None = None
    socioeconomic_target_prefix: str = "ns-sec_"
    socioeconomic_id_column: str = "lsoa21cd"
    hex_grid_path: str | None = None
    overlay_path: str | None = None  # an outline drawn on maps (London: Central Activities Zone)
    overlay_label: str | None = None


@dataclass(frozen=True)
class CitySpec:
    """Everything the pipeline needs to know about one city."""

    key: str
    name: str
    snapshot: SnapshotSpec
    metric_epsg: int | None = None  # None: the UTM zone of the city's centre (auto)
    boundary_path: str | None = None
    bounds_wgs84: tuple[float, float, float, float] | None = None
    description_template: str = DEFAULT_TEMPLATE
    name_template: str = DEFAULT_NAME_TEMPLATE
    evaluation: EvaluationSpec | None = None
    refresh_cron: str = "0 3 * * *"
    attribution: str = ""
    sources: tuple[SourceSpec, ...] = ()
    #: texts of the retrieval heatmaps drawn for every trained version; empty: one per most
    #: common category (:func:`calliper_pipeline.steps.assess.city_queries`)
    retrieval_queries: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        validate_city_key(self.key)

    @property
    def primary_source(self) -> str:
        """The primary snapshot's source name."""
        return self.snapshot.name or DEFAULT_PRIMARY_SOURCE

    def all_sources(self) -> list[tuple[str, SnapshotSpec]]:
        """(name, spec) of every POI source, the primary first, then ``sources`` in order."""
        return [(self.primary_source, self.snapshot)] + [(s.name or "", s) for s in self.sources]

    def templates(self, source: str | None = None) -> tuple[str, str]:
        """(description template, name template) of a source's POIs (the city's by default)."""
        for s in self.sources:
            if source is not None and s.name == source:
                return (
                    s.description_template or self.description_template,
                    s.name_template or self.name_template,
                )
        return self.description_template, self.name_template

    def resolve(self, data_root: Path, relative: str | None) -> Path | None:
        """Resolve a path of this city's config against ``data_root``."""
        if relative is None:
            return None
        p = Path(relative).expanduser()
        return p if p.is_absolute() else Path(data_root) / p

    def snapshot_path(self, data_root: Path) -> Path:
        path = self.resolve(data_root, self.snapshot.path)
        assert path is not None
        return path

    def source_path(self, data_root: Path, spec: SnapshotSpec) -> Path:
        """A source's file resolved against ``data_root``."""
        path = self.resolve(data_root, spec.path)
        assert path is not None
        return path

    def with_snapshot_path(self, path: str | Path) -> CitySpec:
        """A copy reading its snapshot from ``path`` (used by tests and ad-hoc runs)."""
        return replace(self, snapshot=replace(self.snapshot, path=str(path)))


def _field_names(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


def _parse_snapshot(table: Any, cls: type[SnapshotSpec], where: str) -> Any:
    snap = dict(check_keys(table, _field_names(cls), where))
    if "path" not in snap:
        raise ConfigError(f"{where}.path: required (the POI file, relative to the data root)")
    fmt = check_format(snap.get("format"), f"{where}.format")
    snap["format"] = osm_format_of(str(snap["path"]), fmt)
    if "osm" in snap:
        snap["osm"] = check_osm(snap["osm"], snap["format"], f"{where}.osm")
    if snap["format"] in OSM_FORMATS:
        if "columns" in snap:
            raise ConfigError(
                f"{where}.columns: not used with format {snap['format']!r} (an OpenStreetMap "
                "reader gives osm_id, name, category, group, lon, lat; tune the tag mapping "
                f"in [{where}.osm])"
            )
        return _with_filters(cls(columns=OSM_COLUMNS, **snap), where)
    if "columns" not in snap:
        raise ConfigError(f"{where}.columns: required (which columns hold category, lon/lat ...)")
    columns = check_keys(snap.pop("columns"), _field_names(ColumnMap), f"{where}.columns")
    check_columns(columns, f"{where}.columns")
    return _with_filters(cls(columns=ColumnMap(**columns), **snap), where)


def _with_filters(spec: Any, where: str) -> Any:
    try:
        filter_columns(spec.filters)
    except ConfigError as exc:
        raise ConfigError(f"{where}.filters: {exc}") from exc
    return spec


def _check_sources(city: CitySpec, source: str) -> None:
    names = [name for name, _ in city.all_sources()]
    for name in names:
        if not SOURCE_NAME_PATTERN.fullmatch(name):
            raise ConfigError(
                f"{source}: invalid source name {name!r}: use lower-case letters, digits, "
                "'_', '.', '-' (up to 64, starting with a letter or digit)"
            )
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: source names must be unique, got {names}")
    for s in city.sources:
        if s.dedupe_within_m is not None and not s.dedupe_within_m >= 0:
            raise ConfigError(f"{source}: source {s.name!r}: dedupe_within_m must be >= 0")


def _parse_city(doc: Mapping[str, Any], source: str) -> CitySpec:
    validate_city_key(doc.get("key"), source)
    try:
        check_keys(doc, _field_names(CitySpec), "")
        if "snapshot" not in doc:
            raise ConfigError("snapshot: required (the [snapshot] table: path, columns, ...)")
        snapshot = _parse_snapshot(doc["snapshot"], SnapshotSpec, "snapshot")
        sources = tuple(
            _parse_snapshot(s, SourceSpec, f"sources[{i}]")
            for i, s in enumerate(doc.get("sources", ()))
        )
        evaluation = None
        if "evaluation" in doc:
            table = check_keys(doc["evaluation"], _field_names(EvaluationSpec), "evaluation")
            evaluation = EvaluationSpec(**table)
        bounds = doc.get("bounds_wgs84")
        nested = {"snapshot", "evaluation", "bounds_wgs84", "sources", "retrieval_queries"}
        rest = {k: v for k, v in doc.items() if k not in nested}
        city = CitySpec(
            snapshot=snapshot,
            evaluation=evaluation,
            bounds_wgs84=None if bounds is None else check_bounds(bounds),
            sources=sources,
            retrieval_queries=check_queries(doc.get("retrieval_queries", [])),
            **rest,
        )
    except (KeyError, TypeError, ConfigError) as exc:
        raise ConfigError(f"{source}: invalid city configuration: {exc}") from exc
    _check_sources(city, source)
    return city


def load_city_file(path: Path) -> CitySpec:
    """Read one city TOML file.

    Raises:
        ConfigError: the file is not TOML, or is invalid (its key, an unknown key of any
            table, an unknown ``format``, a column map without category or with half a
            coordinate pair, ``bounds_wgs84`` not (min_lon, min_lat, max_lon, max_lat) in
            range and order, a source or a filter), naming the file and the field.
    """
    with open(path, "rb") as fh:
        try:
            doc = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not a valid TOML file: {exc}") from exc
    return _parse_city(doc, str(path))


def load_city_registry(extra_paths: Iterable[Path] = ()) -> dict[str, CitySpec]:
    """All cities: the built-in ones plus TOML files (or folders of them) in ``extra_paths``.

    A user file with the key of a built-in city replaces it.
    """
    files = sorted(BUILTIN_CITY_DIR.glob("*.toml"))
    for p in extra_paths:
        p = Path(p)
        files.extend(sorted(p.glob("*.toml")) if p.is_dir() else [p])
    registry: dict[str, CitySpec] = {}
    for f in files:
        spec = load_city_file(f)
        registry[spec.key] = spec
    return registry


def get_city(key: str, registry: Mapping[str, CitySpec] | None = None) -> CitySpec:
    """The city ``key`` of ``registry`` (default: the built-in and configured cities).

    Raises:
        ConfigError: ``key`` is not a valid city key, or no city has it.
    """
    validate_city_key(key, "get_city")
    reg = registry if registry is not None else load_city_registry()
    if key not in reg:
        raise ConfigError(f"unknown city {key!r}; known: {', '.join(sorted(reg))}")
    return reg[key]
