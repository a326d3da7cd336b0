"""Ingest a city: read every POI source, normalise, merge, de-duplicate, store.

The flow of one city (:func:`ingest_city`):

1. :func:`snapshot_hash`: the data version, covering every source file;
2. :func:`.readers.read_snapshot` of each source (the primary ``[snapshot]`` first, then the
   ``[[sources]]`` in order);
3. the metric CRS from the primary's rows and the city's bounds
   (:mod:`calliper_pipeline.cities.geo`);
4. :func:`.validate.normalise_source` of each source (filters counted, bad rows quarantined
   with a reason); additional sources' ids are prefixed ``"<name>:"`` and their POIs within
   ``dedupe_within_m`` of a POI already merged are dropped and counted
   (:func:`drop_near_duplicates`);
5. descriptions (each source's own templates) and :func:`store.write_city_pois`: the city's
   rows replaced in one transaction, with one ``ingest_log`` row holding the per-source counts.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import time
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from calliper_pipeline.cities.checks import check_bounds_hold_points
from calliper_pipeline.cities.geo import city_bounds_m
from calliper_pipeline.cities.spec import CitySpec
from calliper_pipeline.config import DescriptionConfig
from calliper_pipeline.constants import COL_X, COL_Y
from calliper_pipeline.errors import EmptySnapshotError
from calliper_pipeline.hashing import file_hash
from calliper_pipeline.ingest.filters import apply_filters
from calliper_pipeline.ingest.quality import degenerate_city_warnings
from calliper_pipeline.ingest.readers import read_snapshot
from calliper_pipeline.ingest.report import IngestReport, SourceReport
from calliper_pipeline.ingest.validate import (
    describe_pois,
    finite_points_wgs84,
    normalise_source,
    snapshot_metric_epsg,
)
from calliper_pipeline.store import pois as store

logger = logging.getLogger(__name__)


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "POI snapshot not found", str(path))
    return path


def source_hashes(city: CitySpec, data_root: Path) -> dict[str, str]:
    """SHA-256 of each POI source file by source name, the primary first.

    Raises:
        FileNotFoundError: a source file is missing.
    """
    return {
        name: file_hash(_existing(city.source_path(data_root, spec)))
        for name, spec in city.all_sources()
    }


def combine_hashes(hashes: dict[str, str]) -> str:
    """One data version from :func:`source_hashes` (see :func:`snapshot_hash`)."""
    if len(hashes) == 1:
        return next(iter(hashes.values()))
    text = "".join(f"{name}\t{h}\n" for name, h in hashes.items())
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def snapshot_hash(city: CitySpec, data_root: Path) -> str:
    """The city's data version: a SHA-256 over every POI source file.

    A city with only the primary snapshot keeps that file's own SHA-256 (what earlier
    versions stored). With additional sources it is the SHA-256 of the lines
    ``"<source name>\\t<file sha-256>\\n"`` in source order, so a change to any file (or to
    the list of sources) gives a new version.

    Raises:
        FileNotFoundError: a source file is missing.
    """
    return combine_hashes(source_hashes(city, data_root))


def drop_near_duplicates(
    pois: pd.DataFrame, merged_xy: np.ndarray, within_m: float
) -> tuple[pd.DataFrame, int]:
    """``pois`` without the rows within ``within_m`` metres of a point of ``merged_xy``.

    Args:
        pois: rows with ``x_m``/``y_m`` (metres).
        merged_xy: (M, 2) metres, the POIs already merged.
        within_m: the distance (inclusive).

    Returns:
        (kept rows with a fresh 0..n-1 index, number dropped).
    """
    if pois.empty or len(merged_xy) == 0:
        return pois, 0
    from scipy.spatial import cKDTree

    xy = pois[[COL_X, COL_Y]].to_numpy(dtype=np.float64)
    dist, _ = cKDTree(merged_xy).query(xy, k=1, distance_upper_bound=within_m * (1 + 1e-12))
    near = np.isfinite(dist)
    return pois.loc[~near].reset_index(drop=True), int(near.sum())


def _check_bounds_order(city: CitySpec, raw: pd.DataFrame) -> None:
    """ConfigError when ``bounds_wgs84`` holds none of the primary's POIs and looks lat/lon
    swapped (:func:`cities.checks.check_bounds_hold_points`)."""
    if city.bounds_wgs84 is None or city.boundary_path is not None:
        return
    lon, lat = finite_points_wgs84(raw, city.snapshot.columns)
    check_bounds_hold_points(city.bounds_wgs84, lon, lat, city.key)


def _merge_sources(
    city: CitySpec, data_root: Path, hashes: dict[str, str]
) -> tuple[pd.DataFrame, pd.DataFrame, IngestReport]:
    data_hash = combine_hashes(hashes)
    sources = [(n, s, _existing(city.source_path(data_root, s))) for n, s in city.all_sources()]
    raws = [read_snapshot(path, spec) for _, spec, path in sources]
    primary = apply_filters(raws[0], city.snapshot.filters)[0]
    _check_bounds_order(city, primary)
    metric_epsg = snapshot_metric_epsg(city, primary)
    bounds = city_bounds_m(city, data_root, metric_epsg)
    pois_parts: list[pd.DataFrame] = []
    quarantine_parts: list[pd.DataFrame] = []
    reports: list[SourceReport] = []
    for i, ((name, spec, path), raw) in enumerate(zip(sources, raws, strict=True)):
        prefix = f"{name}:" if i > 0 else ""
        pois, quarantine, rep = normalise_source(
            raw, city, name, spec, metric_epsg, bounds, data_hash, prefix, path=str(path)
        )
        within = getattr(spec, "dedupe_within_m", None)
        n_dup = 0
        if i > 0 and within is not None and pois_parts:
            merged = np.concatenate([p[[COL_X, COL_Y]].to_numpy(np.float64) for p in pois_parts])
            pois, n_dup = drop_near_duplicates(pois, merged, float(within))
        rep = replace(
            rep, rows_valid=len(pois), rows_duplicate=n_dup, path=str(path), file_hash=hashes[name]
        )
        logger.info(
            "%s/%s: %d read, %d filtered out, %d quarantined, %d near-duplicates, %d kept",
            city.key, name, rep.rows_read, rep.rows_filtered_out, rep.rows_quarantined,
            n_dup, rep.rows_valid,
        )  # fmt: skip
        pois_parts.append(pois)
        quarantine_parts.append(quarantine)
        reports.append(rep)
    report = IngestReport.combine(city.key, data_hash, metric_epsg, reports, bounds)
    return (
        pd.concat(pois_parts, ignore_index=True),
        pd.concat(quarantine_parts, ignore_index=True),
        report,
    )


def ingest_city(
    con: duckdb.DuckDBPyConnection,
    city: CitySpec,
    data_root: Path,
    desc_cfg: DescriptionConfig | None = None,
) -> IngestReport:
    """Hash, read, normalise, merge and store every POI source of a city; replaces its rows.

    The returned report's ``seconds`` is the whole ingest's wall time; the ``ingest_log`` row
    (written inside the transaction) holds the time up to the write. Its ``sources`` holds
    each source's counts and file hash; ``rows_duplicate`` the near-duplicates dropped.

    Raises:
        FileNotFoundError: a source (or the boundary) file is missing.
        SnapshotFormatError: a source cannot be parsed.
        ConfigError: ``bounds_wgs84`` holds none of the primary's POIs and lat/lon look swapped.
        EmptySnapshotError: no row survived filtering and validation; the store is unchanged.

    A city that is degenerate for training (:func:`.quality.degenerate_city_warnings`) or a
    source without a valid row is ingested with one-line notes in the report's ``warnings``
    (stored in ``ingest_log``; the CLI and the ``pois`` asset show them).
    """
    start = time.perf_counter()
    pois, quarantine, report = _merge_sources(city, data_root, source_hashes(city, data_root))
    if report.rows_valid == 0:
        paths = ", ".join(str(s["path"]) for s in report.sources.values())
        raise EmptySnapshotError(f"{paths}: no valid POI: {report.summary()}")
    notes = [
        f"{s['path']}: no valid POI ({s['rows_read']:,} rows read)"
        for s in report.sources.values()
        if s["rows_valid"] == 0
    ]
    notes += degenerate_city_warnings(pois)
    pois = describe_pois(pois, city, desc_cfg or DescriptionConfig())
    report = replace(report, seconds=time.perf_counter() - start, warnings=tuple(notes))
    store.write_city_pois(con, city.key, pois, quarantine, report)
    return replace(report, seconds=time.perf_counter() - start)
