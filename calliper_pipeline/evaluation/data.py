"""Downstream evaluation sets: land-use points (LUC) and socio-economic distributions (SDM).

Each set is read with geopandas from the paths a city's :class:`~calliper_pipeline.cities.spec.
EvaluationSpec` names (relative to the caller's data root), reprojected to the city's metric CRS
and to WGS84, and returned as :class:`LabelledPoints` in **file row order**: the fixed split of
:func:`~calliper_pipeline.evaluation.splits.fixed_split` permutes row positions, so the order
is part of the protocol (the authors' notebooks split the GeoDataFrame as read).

Units: ``x_m``/``y_m`` are metres in ``metric_epsg``; ``lon``/``lat`` are degrees, EPSG:4326.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np

from calliper_pipeline.cities.spec import CitySpec
from calliper_pipeline.constants import WGS84_EPSG
from calliper_pipeline.errors import CalliperError, ConfigError

LANDUSE_TASK = "luc"
SOCIOECONOMIC_TASK = "sdm"


class MissingEvaluationSetError(ConfigError):
    """The city's configuration names no such evaluation set."""


class EvaluationDataError(CalliperError):
    """An evaluation file exists but its content is unusable (CRS, geometry, labels, targets)."""


@dataclass(frozen=True, eq=False)
class LabelledPoints:
    """Points with downstream targets, in file row order.

    Attributes:
        ids: (N,) identifiers: the LSOA code for SDM, the 0-based file row for LUC (London's
            ``loc_id`` equals it).
        x_m, y_m: (N,) float64 metres in the city's metric CRS.
        lon, lat: (N,) float64 WGS84 degrees.
        targets: LUC: (N,) int64 class indices 0..C-1; SDM: (N, C) float32 proportions whose rows
            sum to 1.
        class_names: C names: land-use class names by index, or the SDM target columns.
        task: ``"luc"`` or ``"sdm"``.
    """

    ids: np.ndarray
    x_m: np.ndarray
    y_m: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    targets: np.ndarray
    class_names: tuple[str, ...]
    task: str

    def __len__(self) -> int:
        return len(self.x_m)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def coords_m(self) -> np.ndarray:
        """(N, 2) float64 metric coordinates."""
        return np.stack([self.x_m, self.y_m], axis=1)


def has_landuse(city: CitySpec) -> bool:
    """Whether the city's configuration names a land-use set."""
    return city.evaluation is not None and city.evaluation.landuse_path is not None


def has_socioeconomic(city: CitySpec) -> bool:
    """Whether the city's configuration names a socio-economic set."""
    return city.evaluation is not None and city.evaluation.socioeconomic_path is not None


def _read_points(
    path: Path, metric_epsg: int
) -> tuple[gpd.GeoDataFrame, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read a point file; return it with (x_m, y_m, lon, lat) float64 arrays."""
    if not path.is_file():
        raise FileNotFoundError(f"evaluation file not found: {path}")
    gdf = gpd.read_file(path)
    if gdf.crs is None:
        raise EvaluationDataError(f"{path}: no CRS; cannot place the points")
    if len(gdf) == 0:
        raise EvaluationDataError(f"{path}: no rows")
    if gdf.geometry.isna().any() or not (gdf.geom_type == "Point").all():
        raise EvaluationDataError(f"{path}: every row needs a Point geometry")
    metric = gdf.geometry.to_crs(epsg=metric_epsg)
    wgs84 = gdf.geometry.to_crs(epsg=WGS84_EPSG)
    x_m, y_m = np.asarray(metric.x, np.float64), np.asarray(metric.y, np.float64)
    lon, lat = np.asarray(wgs84.x, np.float64), np.asarray(wgs84.y, np.float64)
    if not all(np.isfinite(a).all() for a in (x_m, y_m, lon, lat)):
        raise EvaluationDataError(f"{path}: non-finite coordinates after reprojection")
    return gdf, x_m, y_m, lon, lat


def load_landuse(city: CitySpec, data_root: Path, metric_epsg: int) -> LabelledPoints:
    """The city's land-use points with integer class labels.

    Labels come from ``evaluation.landuse_label_column``; if they are not already 0..C-1 they are
    remapped in sorted order of the original ids. Each id must map to one class name
    (``evaluation.landuse_name_column``; the id itself when that column is absent).

    Raises:
        MissingEvaluationSetError: the city has no land-use set.
        FileNotFoundError: the configured file does not exist.
        EvaluationDataError: missing CRS or columns, non-point geometry, inconsistent names.
    """
    if not has_landuse(city):
        raise MissingEvaluationSetError(f"city {city.key!r} has no land-use evaluation set")
    spec = city.evaluation
    assert spec is not None
    path = city.resolve(Path(data_root), spec.landuse_path)
    assert path is not None
    gdf, x_m, y_m, lon, lat = _read_points(path, metric_epsg)
    if spec.landuse_label_column not in gdf.columns:
        raise EvaluationDataError(f"{path}: no label column {spec.landuse_label_column!r}")
    raw = gdf[spec.landuse_label_column]
    if raw.isna().any():
        raise EvaluationDataError(f"{path}: missing labels in {spec.landuse_label_column!r}")
    raw_ids = raw.to_numpy()
    uniques, labels = np.unique(raw_ids, return_inverse=True)
    names = (
        gdf[spec.landuse_name_column].astype(str)
        if spec.landuse_name_column in gdf.columns
        else raw.astype(str)
    )
    per_id = names.groupby(raw).unique()
    if (per_id.map(len) > 1).any():
        raise EvaluationDataError(f"{path}: a label id maps to more than one class name")
    class_names = tuple(str(per_id[u][0]) for u in uniques)
    return LabelledPoints(
        ids=np.arange(len(gdf), dtype=np.int64),
        x_m=x_m,
        y_m=y_m,
        lon=lon,
        lat=lat,
        targets=labels.astype(np.int64),
        class_names=class_names,
        task=LANDUSE_TASK,
    )


def _target_columns(columns: list[str], prefix: str) -> list[str]:
    """Columns starting with ``prefix``, ordered by their numeric suffix when all have one."""
    cols = [c for c in columns if c.startswith(prefix)]
    suffixes = [c[len(prefix) :] for c in cols]
    if cols and all(re.fullmatch(r"\d+", s) for s in suffixes):
        cols = [c for _, c in sorted(zip((int(s) for s in suffixes), cols, strict=True))]
    return cols


def load_socioeconomic(
    city: CitySpec, data_root: Path, metric_epsg: int, max_sum_drift: float = 0.01
) -> LabelledPoints:
    """The city's socio-economic points with (N, C) target proportions.

    Targets are the columns starting with ``evaluation.socioeconomic_target_prefix`` (London:
    ``ns-sec_1`` .. ``ns-sec_9``, ordered by their number). Rows must be finite, non-negative and
    sum to 1 within ``max_sum_drift``; rows within it are renormalised to sum to 1 exactly (in
    float64, then cast to float32).

    Raises:
        MissingEvaluationSetError: the city has no socio-economic set.
        FileNotFoundError: the configured file does not exist.
        EvaluationDataError: missing CRS, id or target columns, invalid proportions.
    """
    if not has_socioeconomic(city):
        raise MissingEvaluationSetError(f"city {city.key!r} has no socio-economic evaluation set")
    spec = city.evaluation
    assert spec is not None
    path = city.resolve(Path(data_root), spec.socioeconomic_path)
    assert path is not None
    gdf, x_m, y_m, lon, lat = _read_points(path, metric_epsg)
    cols = _target_columns([str(c) for c in gdf.columns], spec.socioeconomic_target_prefix)
    if len(cols) < 2:
        raise EvaluationDataError(
            f"{path}: need at least 2 target columns with prefix "
            f"{spec.socioeconomic_target_prefix!r}, found {cols}"
        )
    if spec.socioeconomic_id_column not in gdf.columns:
        raise EvaluationDataError(f"{path}: no id column {spec.socioeconomic_id_column!r}")
    values = gdf[cols].to_numpy(dtype=np.float64)
    if not np.isfinite(values).all() or (values < 0).any():
        raise EvaluationDataError(f"{path}: target proportions must be finite and >= 0")
    sums = values.sum(axis=1)
    worst = int(np.argmax(np.abs(sums - 1.0)))
    if abs(sums[worst] - 1.0) > max_sum_drift:
        raise EvaluationDataError(
            f"{path}: row {worst} proportions sum to {sums[worst]:.6f}, not 1 "
            f"(allowed drift {max_sum_drift})"
        )
    targets = (values / sums[:, None]).astype(np.float32)
    return LabelledPoints(
        ids=gdf[spec.socioeconomic_id_column].astype(str).to_numpy(dtype=object),
        x_m=x_m,
        y_m=y_m,
        lon=lon,
        lat=lat,
        targets=targets,
        class_names=tuple(cols),
        task=SOCIOECONOMIC_TASK,
    )
