"""City registry: what a city is, where its data lives, how its columns map to ours.

A city is configuration, not code: one TOML file per city (the built-in ones live in
``calliper_pipeline/cities/configs/``; users add theirs with :func:`load_city_registry`'s
``extra_paths``). Paths inside a city file are relative to the *data root* the caller passes
(never the working directory); absolute paths are used as they are.

Units: ``bounds_wgs84`` is (min_lon, min_lat, max_lon, max_lat) in degrees, EPSG:4326;
``bounds_m`` is (min_x, min_y, max_x, max_y) in metres of ``metric_epsg``.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from calliper_pipeline.constants import WGS84_EPSG
from calliper_pipeline.errors import ConfigError

BUILTIN_CITY_DIR = Path(__file__).parent / "configs"

DEFAULT_TEMPLATE = "A place of {category}, a type of {group}"
DEFAULT_NAME_TEMPLATE = "{name}, a place of {category}, a type of {group}"


@dataclass(frozen=True)
class ColumnMap:
    """Which source columns hold each POI field.

    Either ``lon``/``lat`` or ``x``/``y`` must be given; ``source_epsg`` says the CRS of the
    coordinate columns (4326 for lon/lat). ``poi_id`` None means the 1-based row number is the id.
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


@dataclass(frozen=True)
class SnapshotSpec:
    """A city's POI snapshot file and how to read it.

    ``filters`` keeps only rows whose column equals the value (e.g. ``is_duplicate = false``);
    rows filtered out are counted in the ingestion report, not silently lost.
    """

    path: str
    columns: ColumnMap
    format: str | None = None  # csv | geojson | parquet | geoparquet; None: from the suffix
    filters: Mapping[str, Any] = field(default_factory=dict)


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

    def with_snapshot_path(self, path: str | Path) -> CitySpec:
        """A copy reading its snapshot from ``path`` (used by tests and ad-hoc runs)."""
        return replace(self, snapshot=replace(self.snapshot, path=str(path)))


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS84 UTM zone containing (lon, lat) degrees (326xx north, 327xx south)."""
    if not (-180.0 <= lon <= 180.0 and -80.0 <= lat <= 84.0):
        raise ConfigError(f"no UTM zone for lon={lon}, lat={lat}")
    zone = min(math.floor((lon + 180.0) / 6.0) + 1, 60)
    return (32600 if lat >= 0 else 32700) + zone


def _parse_city(doc: Mapping[str, Any], source: str) -> CitySpec:
    try:
        snap = dict(doc["snapshot"])
        columns = ColumnMap(**snap.pop("columns"))
        snapshot = SnapshotSpec(columns=columns, **snap)
        evaluation = EvaluationSpec(**doc["evaluation"]) if "evaluation" in doc else None
        bounds = doc.get("bounds_wgs84")
        rest = {k: v for k, v in doc.items() if k not in {"snapshot", "evaluation", "bounds_wgs84"}}
        return CitySpec(
            snapshot=snapshot,
            evaluation=evaluation,
            bounds_wgs84=tuple(bounds) if bounds else None,  # type: ignore[arg-type]
            **rest,
        )
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{source}: invalid city configuration: {exc}") from exc


def load_city_file(path: Path) -> CitySpec:
    """Read one city TOML file."""
    with open(path, "rb") as fh:
        return _parse_city(tomllib.load(fh), str(path))


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
    reg = registry if registry is not None else load_city_registry()
    if key not in reg:
        raise ConfigError(f"unknown city {key!r}; known: {', '.join(sorted(reg))}")
    return reg[key]
