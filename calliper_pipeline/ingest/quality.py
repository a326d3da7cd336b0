"""Data-quality measurements of a city's stored POIs and text embeddings, and category drift.

Each function measures; the caller decides (the Dagster layer turns these numbers into blocking
asset checks and a warning). Counts are of POI rows unless said otherwise.

Drift: every ingest's category mix is kept in ``category_mix_log`` (one row per (ingest,
category), keyed by the ``ingest_log`` id), so a new snapshot is compared with the previous one
by the total variation distance TVD = 1/2 sum |p - q| over the union of categories (0: the same
mix; 1: no category in common).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import duckdb
import numpy as np
import pandas as pd

from calliper_pipeline.cities.geo import city_bounds_m
from calliper_pipeline.cities.spec import CitySpec
from calliper_pipeline.config import DescriptionConfig, TrainConfig
from calliper_pipeline.constants import (
    COL_CATEGORY,
    COL_DESCRIPTION,
    COL_POI_ID,
    COL_TEXT_HASH,
    COL_X,
    COL_Y,
    POIS_TABLE,
)
from calliper_pipeline.hashing import text_hash
from calliper_pipeline.ingest.descriptions import describe_frame
from calliper_pipeline.store import pois as store
from calliper_pipeline.store.db import registered, table_exists, transaction
from calliper_pipeline.store.schema import MIX_TABLE, ensure_mix_schema
from calliper_pipeline.text.cache import MissingEmbeddingError, load_text_embeddings


@dataclass(frozen=True)
class PoiQuality:
    """Invariants of the city's ``pois`` rows; ``bounds_m`` is (min_x, min_y, max_x, max_y)."""

    n_pois: int
    n_duplicate_ids: int  # rows beyond the first of each repeated poi_id
    n_outside_bounds: int
    n_missing_description: int  # empty/NULL description or text hash
    bounds_m: tuple[float, float, float, float]


@dataclass(frozen=True)
class EmbeddingCoverage:
    """How well the text-embedding cache covers the city's distinct texts."""

    encoder_id: str
    n_texts: int  # distinct texts of the city's POIs for the description variant
    n_missing: int  # texts with no cached vector for this encoder
    n_nonfinite: int  # cached vectors holding NaN or infinity
    dim: int  # vector width (0 when nothing is cached)

    @property
    def complete(self) -> bool:
        return self.n_texts > 0 and self.n_missing == 0 and self.n_nonfinite == 0


@dataclass(frozen=True)
class MixDrift:
    """Category mix of the latest ingest against the previous one (None: no previous)."""

    tvd: float | None
    current_ingest_id: int | None
    previous_ingest_id: int | None
    changes: pd.DataFrame  # category, previous, current, delta; largest |delta| first


#: A city with fewer POIs than one training batch (the default preset's) cannot fill a batch.
MIN_POIS: Final = TrainConfig().batch_size
#: A city whose POIs sit at fewer distinct places (to the metre) than this is degenerate.
MIN_DISTINCT_PLACES: Final = 10


def degenerate_city_warnings(pois: pd.DataFrame, batch_size: int = MIN_POIS) -> list[str]:
    """One-line warnings when a city's POIs are too few or too uniform to train on.

    ``pois`` has ``category`` and ``x_m``/``y_m`` (metres). Warned: fewer POIs than a training
    batch (``batch_size``, default :data:`MIN_POIS`), one category only (the contrastive loss
    has nothing to tell apart), fewer than :data:`MIN_DISTINCT_PLACES` distinct places (to the
    metre). An empty frame gives no warning (the ingest refuses it).
    """
    n = len(pois)
    if n == 0:
        return []
    out = []
    if n < batch_size:
        out.append(f"{n:,} POIs, fewer than one training batch ({batch_size:,})")
    n_categories = pois[COL_CATEGORY].nunique()
    if n_categories < 2:
        out.append(f"one category only ({pois[COL_CATEGORY].iloc[0]!r}): nothing to contrast")
    places = len(pois[[COL_X, COL_Y]].round(0).drop_duplicates())
    if places < MIN_DISTINCT_PLACES:
        out.append(f"all {n:,} POIs lie at {places} distinct place(s) (to the metre)")
    return out


def stored_city_warnings(
    con: duckdb.DuckDBPyConnection, city_key: str, batch_size: int = MIN_POIS
) -> list[str]:
    """:func:`degenerate_city_warnings` of the city's stored POIs (none stored: a warning)."""
    if not table_exists(con, POIS_TABLE):
        return ["no POIs stored"]
    pois = con.execute(
        f"SELECT {COL_CATEGORY}, {COL_X}, {COL_Y} FROM {POIS_TABLE} WHERE city = ?", [city_key]
    ).df()
    return degenerate_city_warnings(pois, batch_size) if len(pois) else ["no POIs stored"]


def poi_quality(con: duckdb.DuckDBPyConnection, city: CitySpec, data_root: Path) -> PoiQuality:
    """Count the rows of ``city`` that break the table's invariants.

    Bounds are the city's (boundary extent or ``bounds_wgs84``) in the metric CRS of its latest
    ingest; a city never ingested has no rows and zero-size bounds.
    """
    latest = store.latest_ingest(con, city.key)
    if latest is None:
        return PoiQuality(0, 0, 0, 0, (0.0, 0.0, 0.0, 0.0))
    bounds = city_bounds_m(city, data_root, int(latest["metric_epsg"]))
    row = con.execute(
        f"""
        SELECT count(*),
               count(*) - count(DISTINCT {COL_POI_ID}),
               count(*) FILTER (WHERE NOT ({COL_X} BETWEEN ? AND ? AND {COL_Y} BETWEEN ? AND ?)),
               count(*) FILTER (WHERE coalesce(trim({COL_DESCRIPTION}), '') = ''
                                   OR coalesce({COL_TEXT_HASH}, '') = '')
        FROM {POIS_TABLE} WHERE city = ?
        """,
        [bounds[0], bounds[2], bounds[1], bounds[3], city.key],
    ).fetchall()[0]
    return PoiQuality(int(row[0]), int(row[1]), int(row[2]), int(row[3]), bounds)


def city_text_hashes(
    con: duckdb.DuckDBPyConnection, city: CitySpec, desc_cfg: DescriptionConfig
) -> list[str]:
    """Hashes of the city's distinct training texts for a description variant (sorted)."""
    pois = store.read_city_pois(con, city.key)
    texts = describe_frame(pois, city, desc_cfg) if not pois.empty else pd.Series(dtype=object)
    return sorted({text_hash(str(t)) for t in texts})


def embedding_coverage(
    con: duckdb.DuckDBPyConnection,
    city: CitySpec,
    encoder_id: str,
    desc_cfg: DescriptionConfig | None = None,
) -> EmbeddingCoverage:
    """Whether every distinct text of the city has a finite cached vector for ``encoder_id``."""
    hashes = city_text_hashes(con, city, desc_cfg or DescriptionConfig())
    missing: tuple[str, ...] = ()
    try:
        table = load_text_embeddings(con, encoder_id, hashes)
    except MissingEmbeddingError as exc:
        missing = exc.missing
        present = sorted(set(hashes) - set(missing))
        table = load_text_embeddings(con, encoder_id, present)
    n_nonfinite = int((~np.isfinite(table).all(axis=1)).sum()) if table.size else 0
    dim = int(table.shape[1]) if table.ndim == 2 else 0
    return EmbeddingCoverage(encoder_id, len(hashes), len(missing), n_nonfinite, dim)


def record_category_mix(con: duckdb.DuckDBPyConnection, city_key: str) -> pd.Series:
    """Store the category mix of the city's stored POIs under its latest ingest (idempotent).

    Returns:
        The mix (share per category, summing to 1); empty when the city has no POIs.
    """
    mix = store.city_category_mix(con, city_key)
    latest = store.latest_ingest(con, city_key)
    if latest is None or mix.empty:
        return mix
    ensure_mix_schema(con)
    frame = pd.DataFrame({"category": mix.index.astype(str), "share": mix.to_numpy(float)})
    now = datetime.now(UTC).replace(tzinfo=None)
    with registered(con, frame) as view, transaction(con):
        con.execute(
            f"DELETE FROM {MIX_TABLE} WHERE city = ? AND ingest_id = ?",
            [city_key, latest["ingest_id"]],
        )
        con.execute(
            f"INSERT INTO {MIX_TABLE} SELECT ?, ?, ?, category, share, ? FROM {view}",
            [city_key, latest["ingest_id"], latest["snapshot_hash"], now],
        )
    return mix


def _mix_of(con: duckdb.DuckDBPyConnection, city_key: str, ingest_id: int) -> pd.Series:
    df = con.execute(
        f"SELECT category, share FROM {MIX_TABLE} WHERE city = ? AND ingest_id = ?",
        [city_key, ingest_id],
    ).df()
    return pd.Series(df["share"].to_numpy(float), index=pd.Index(df["category"]), name="share")


def total_variation(p: pd.Series, q: pd.Series) -> float:
    """1/2 sum |p - q| over the union of the two indexes (missing shares count as 0)."""
    p2, q2 = p.align(q, fill_value=0.0)
    return 0.5 * float(np.abs(p2.to_numpy(float) - q2.to_numpy(float)).sum())


def category_mix_drift(con: duckdb.DuckDBPyConnection, city_key: str) -> MixDrift:
    """TVD between the mixes of the city's two most recent recorded ingests."""
    empty = pd.DataFrame(columns=[COL_CATEGORY, "previous", "current", "delta"])
    if not table_exists(con, MIX_TABLE):
        return MixDrift(None, None, None, empty)
    ids = [
        int(r[0])
        for r in con.execute(
            f"SELECT DISTINCT ingest_id FROM {MIX_TABLE} WHERE city = ? "
            "ORDER BY ingest_id DESC LIMIT 2",
            [city_key],
        ).fetchall()
    ]
    if not ids:
        return MixDrift(None, None, None, empty)
    current = _mix_of(con, city_key, ids[0])
    if len(ids) < 2:
        return MixDrift(None, ids[0], None, empty)
    previous = _mix_of(con, city_key, ids[1])
    prev, cur = previous.align(current, fill_value=0.0)
    changes = pd.DataFrame(
        {COL_CATEGORY: prev.index, "previous": prev.to_numpy(), "current": cur.to_numpy()}
    )
    changes["delta"] = changes["current"] - changes["previous"]
    changes = changes.reindex(changes["delta"].abs().sort_values(ascending=False).index)
    tvd = total_variation(previous, current)
    return MixDrift(
        None if math.isnan(tvd) else tvd, ids[0], ids[1], changes.reset_index(drop=True)
    )
