"""The ingest step: read, validate and store a city's POI snapshot, then profile it.

Called by the ``pois`` asset and ``calliper ingest``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from calliper_pipeline.cities.spec import CitySpec
from calliper_pipeline.config import DescriptionConfig
from calliper_pipeline.constants import COL_SOURCE_ROW, POI_COLUMNS, POIS_TABLE
from calliper_pipeline.errors import EmptySnapshotError
from calliper_pipeline.ingest import quality
from calliper_pipeline.ingest.ingest import ingest_city
from calliper_pipeline.ingest.report import IngestReport
from calliper_pipeline.store import pois as store


def ingest(
    con: duckdb.DuckDBPyConnection,
    city: CitySpec,
    data_root: Path,
    desc_cfg: DescriptionConfig | None = None,
) -> IngestReport:
    """Read, validate and project the city's snapshot into DuckDB (quarantine included)."""
    return ingest_city(con, city, data_root, desc_cfg or DescriptionConfig())


def load_pois(con: duckdb.DuckDBPyConnection, city: CitySpec) -> pd.DataFrame:
    """The city's ingested POIs; raises if the city was never ingested or has none."""
    pois = store.read_city_pois(con, city.key)
    if pois.empty:
        raise EmptySnapshotError(f"no POIs stored for city {city.key!r}: ingest it first")
    return pois


@dataclass(frozen=True)
class IngestOutcome:
    """An ingest's report, a sample of the stored rows and the city's category mix; ``reused``
    when the stored rows were already the ingest of the same inputs (nothing rewritten), with
    the cache key and what it covers."""

    report: IngestReport
    sample: pd.DataFrame  # the first stored POIs (columns constants.POI_COLUMNS)
    category_mix: pd.Series  # share per category, largest first
    reused: bool = False
    cache_key: str = ""
    cache_covers: tuple[str, ...] = ()


#: The modules whose source is part of the ingest's cache key.
INGEST_CODE = ("calliper_pipeline.ingest", "calliper_pipeline.cities", "calliper_pipeline.store")


def _report_from_dict(d: dict[str, Any]) -> IngestReport:
    bounds = d.get("bounds_m")
    return IngestReport(
        **{
            **d,
            "bounds_m": tuple(bounds) if bounds is not None else None,
            "warnings": tuple(d.get("warnings", ())),
        }
    )


def _ingest_cached(
    con: duckdb.DuckDBPyConnection,
    city: CitySpec,
    data_root: Path,
    desc_cfg: DescriptionConfig,
    cache_root: Path,
) -> tuple[IngestReport, bool, str, tuple[str, ...]]:
    """The ingest, skipped when the city's latest stored ingest is the one a cache entry of the
    same inputs (source files' hashes, boundary, city file, description settings, ingest
    code) recorded."""
    from dataclasses import asdict

    from calliper_pipeline.hashing import code_fingerprint, layer_hash
    from calliper_pipeline.ingest.ingest import source_hashes
    from calliper_pipeline.steps import cache

    boundary = city.resolve(data_root, city.boundary_path)
    parts = {
        "sources": source_hashes(city, data_root),
        "boundary": layer_hash(boundary) if boundary is not None else None,
        "city": asdict(city),
        "description": asdict(desc_cfg),
        "code": code_fingerprint(*INGEST_CODE),
    }

    def latest_id() -> int | None:
        latest = store.latest_ingest(con, city.key)
        return None if latest is None else int(latest["ingest_id"])

    def make(_folder: Path) -> dict[str, Any]:
        report = ingest(con, city, data_root, desc_cfg)
        return {"ingest_id": latest_id(), "report": report.to_dict()}

    def still_stored(entry: cache.CacheEntry) -> bool:
        return entry.payload.get("ingest_id") == latest_id()

    entry = cache.build(cache_root, "ingest", parts, make, still_valid=still_stored)
    return _report_from_dict(entry.payload["report"]), entry.hit, entry.key, entry.covers


def ingest_profiled(
    con: duckdb.DuckDBPyConnection,
    city: CitySpec,
    data_root: Path,
    desc_cfg: DescriptionConfig | None = None,
    sample_rows: int = 5,
    cache_root: Path | None = None,
) -> IngestOutcome:
    """:func:`ingest`, then record the category mix (for drift) and sample the rows.

    With ``cache_root``, an ingest of the same inputs whose rows the store still holds (the
    city's latest ingest) is not repeated: its report is returned with ``reused=True``.
    """
    desc_cfg = desc_cfg or DescriptionConfig()
    covers: tuple[str, ...]
    if cache_root is None:
        report = ingest(con, city, data_root, desc_cfg)
        reused, key, covers = False, "", ()
    else:
        report, reused, key, covers = _ingest_cached(con, city, data_root, desc_cfg, cache_root)
    mix = quality.record_category_mix(con, city.key)  # idempotent for the same ingest
    cols = ", ".join(f'"{c}"' for c in POI_COLUMNS)
    sample = con.execute(
        f"SELECT {cols} FROM {POIS_TABLE} WHERE city = ? ORDER BY {COL_SOURCE_ROW} LIMIT ?",
        [city.key, sample_rows],
    ).df()
    return IngestOutcome(report, sample, mix, reused, key, covers)
