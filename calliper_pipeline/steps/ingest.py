"""The ingest step: read, validate and store a city's POI snapshot, then profile it.

Called by the ``pois`` asset and ``calliper ingest``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
    """An ingest's report, a sample of the stored rows and the city's category mix."""

    report: IngestReport
    sample: pd.DataFrame  # the first stored POIs (columns constants.POI_COLUMNS)
    category_mix: pd.Series  # share per category, largest first


def ingest_profiled(
    con: duckdb.DuckDBPyConnection,
    city: CitySpec,
    data_root: Path,
    desc_cfg: DescriptionConfig | None = None,
    sample_rows: int = 5,
) -> IngestOutcome:
    """:func:`ingest`, then record the category mix (for drift) and sample the rows."""
    report = ingest(con, city, data_root, desc_cfg)
    mix = quality.record_category_mix(con, city.key)
    cols = ", ".join(f'"{c}"' for c in POI_COLUMNS)
    sample = con.execute(
        f"SELECT {cols} FROM {POIS_TABLE} WHERE city = ? ORDER BY {COL_SOURCE_ROW} LIMIT ?",
        [city.key, sample_rows],
    ).df()
    return IngestOutcome(report=report, sample=sample, category_mix=mix)
