"""The pipeline's stages as plain functions: ingest, embed, train, evaluate.

The CLI and the Dagster assets both call these; each takes explicit arguments (a DuckDB
connection, a data root, config dataclasses, an encoder object) and returns a report or result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from calliper_pipeline.cities.spec import CitySpec
from calliper_pipeline.config import DescriptionConfig, RunConfig
from calliper_pipeline.constants import COL_LAT, COL_LON, COL_X, COL_Y
from calliper_pipeline.errors import EmptySnapshotError
from calliper_pipeline.evaluation.data import (
    LabelledPoints,
    has_landuse,
    has_socioeconomic,
    load_landuse,
    load_socioeconomic,
)
from calliper_pipeline.hashing import text_hash
from calliper_pipeline.ingest.descriptions import describe_frame
from calliper_pipeline.ingest.snapshot import IngestReport, city_bounds_m, ingest_city
from calliper_pipeline.model.calliper import ModelSpec, embed_points, prepare_coords
from calliper_pipeline.store import pois as store
from calliper_pipeline.text.encoders import (
    EmbedReport,
    TextEncoder,
    embed_texts_cached,
    load_text_embeddings,
)
from calliper_pipeline.training.loop import EpochStats, TrainResult, train

logger = logging.getLogger(__name__)
from calliper_pipeline.progress import LogFn  # noqa: E402


def ingest(
    con: duckdb.DuckDBPyConnection,
    city: CitySpec,
    data_root: Path,
    desc_cfg: DescriptionConfig | None = None,
) -> IngestReport:
    """Read, validate and project the city's snapshot into DuckDB (quarantine included)."""
    return ingest_city(con, city, data_root, desc_cfg or DescriptionConfig())


def city_texts(pois: pd.DataFrame, city: CitySpec, desc_cfg: DescriptionConfig) -> pd.Series:
    """The training text of every POI for a description variant (CaLLiPer or CaLLiPer+)."""
    return describe_frame(pois, city, desc_cfg)


def load_pois(con: duckdb.DuckDBPyConnection, city: CitySpec) -> pd.DataFrame:
    """The city's ingested POIs; raises if the city was never ingested or has none."""
    pois = store.read_city_pois(con, city.key)
    if pois.empty:
        raise EmptySnapshotError(f"no POIs stored for city {city.key!r}: ingest it first")
    return pois


def embed(
    con: duckdb.DuckDBPyConnection,
    city: CitySpec,
    encoder: TextEncoder,
    desc_cfg: DescriptionConfig | None = None,
    batch_size: int = 256,
    show_progress: bool = False,
    log: LogFn | None = None,
) -> EmbedReport:
    """Embed every distinct text of the city not yet in the shared cache."""
    texts = city_texts(load_pois(con, city), city, desc_cfg or DescriptionConfig())
    return embed_texts_cached(
        con, encoder, texts.tolist(), batch_size=batch_size, show_progress=show_progress, log=log
    )


@dataclass
class TrainingInputs:
    """In-memory training tensors' sources for one city (see :func:`train.train`)."""

    pois: pd.DataFrame
    spec: ModelSpec
    coords: np.ndarray  # (N, 2) float32 prepared for the encoder's input space
    text_index: np.ndarray  # (N,) int64 rows of text_table
    text_table: np.ndarray  # (U, D) float32 distinct text embeddings
    texts: list[str]  # the U distinct texts


def model_spec(
    city: CitySpec,
    data_root: Path,
    metric_epsg: int,
    run_cfg: RunConfig,
    text_dim: int,
    text_encoder_id: str,
) -> ModelSpec:
    """Model spec for a city: centred on the middle of its bounds (metres, ``metric_epsg``)."""
    bounds = city_bounds_m(city, data_root, metric_epsg)
    centre = ((bounds[0] + bounds[2]) / 2.0, (bounds[1] + bounds[3]) / 2.0)
    return ModelSpec(
        encoder=run_cfg.encoder,
        text_dim=text_dim,
        centre_m=(float(centre[0]), float(centre[1])),
        metric_epsg=metric_epsg,
        text_encoder_id=text_encoder_id,
        normalize_text=run_cfg.train.normalize_text,
        init_temperature=run_cfg.train.init_temperature,
        city=city.key,
        bounds_m=tuple(float(b) for b in bounds),  # type: ignore[arg-type]
    )


def training_inputs(
    con: duckdb.DuckDBPyConnection,
    city: CitySpec,
    data_root: Path,
    text_encoder_id: str,
    run_cfg: RunConfig,
) -> TrainingInputs:
    """Gather POIs, their cached text embeddings and prepared coordinates."""
    pois = load_pois(con, city)
    ingest_row = store.latest_ingest(con, city.key)
    if ingest_row is None:
        raise EmptySnapshotError(f"city {city.key!r} has no ingest record")
    texts = city_texts(pois, city, run_cfg.description)
    codes, distinct = pd.factorize(texts, sort=True)
    distinct_texts = [str(t) for t in distinct]
    table = load_text_embeddings(con, text_encoder_id, [text_hash(t) for t in distinct_texts])
    spec = model_spec(
        city, data_root, int(ingest_row["metric_epsg"]), run_cfg, table.shape[1], text_encoder_id
    )
    probe_space = _input_space(spec)
    coords = prepare_coords(
        spec,
        probe_space,
        pois[COL_X].to_numpy(),
        pois[COL_Y].to_numpy(),
        pois[COL_LON].to_numpy(),
        pois[COL_LAT].to_numpy(),
    )
    return TrainingInputs(pois, spec, coords, codes.astype(np.int64), table, distinct_texts)


def _input_space(spec: ModelSpec) -> str:
    from calliper_pipeline.model.encodings import PE_REGISTRY

    return str(PE_REGISTRY[spec.encoder.pe].input_space)


def train_city(
    inputs: TrainingInputs,
    run_cfg: RunConfig,
    on_epoch_end: Callable[[EpochStats], None] | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    show_progress: bool = False,
) -> TrainResult:
    """Train the city's location encoder on its POIs (paper configuration by default)."""
    return train(
        inputs.spec,
        inputs.coords,
        inputs.text_index,
        inputs.text_table,
        run_cfg.train,
        on_epoch_end=on_epoch_end,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        show_progress=show_progress,
    )


@dataclass
class EvaluationSets:
    """A city's downstream sets (either may be missing)."""

    landuse: LabelledPoints | None
    socioeconomic: LabelledPoints | None

    @property
    def empty(self) -> bool:
        return self.landuse is None and self.socioeconomic is None


def evaluation_sets(city: CitySpec, data_root: Path, metric_epsg: int) -> EvaluationSets:
    """Load the city's land-use and socio-economic sets in its metric CRS."""
    luc = load_landuse(city, data_root, metric_epsg) if has_landuse(city) else None
    sdm = load_socioeconomic(city, data_root, metric_epsg) if has_socioeconomic(city) else None
    return EvaluationSets(luc, sdm)


FeatureFn = Callable[[LabelledPoints], np.ndarray]


def model_features(model: object) -> FeatureFn:
    """Feature function: the trained encoder's embedding of each evaluation point."""
    from calliper_pipeline.model.calliper import CalliperModel

    assert isinstance(model, CalliperModel)

    def features(points: LabelledPoints) -> np.ndarray:
        return embed_points(model, points.x_m, points.y_m, points.lon, points.lat)

    return features
