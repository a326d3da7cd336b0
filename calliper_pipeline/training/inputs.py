"""A city's training inputs: points, text table, per-head targets, model spec; and training it.

The points are the city's stored POIs (optionally only some ``source`` values) followed by
background points drawn inside the city boundary; coordinates are metres in the city's
metric CRS. The objective (:class:`config.ObjectiveConfig`) decides the heads: the paper's
own-text head and/or one neighbourhood head per radius.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from calliper_pipeline.cities.geo import city_boundary_m, city_bounds_m, project
from calliper_pipeline.cities.spec import CitySpec
from calliper_pipeline.config import ObjectiveConfig, RunConfig
from calliper_pipeline.constants import (
    COL_LAT,
    COL_LON,
    COL_SNAPSHOT_HASH,
    COL_X,
    COL_Y,
    WGS84_EPSG,
)
from calliper_pipeline.errors import EmptySnapshotError
from calliper_pipeline.hashing import text_hash
from calliper_pipeline.ingest.descriptions import describe_frame
from calliper_pipeline.model.calliper import ModelSpec, prepare_coords
from calliper_pipeline.store import pois as store
from calliper_pipeline.text.cache import load_text_embeddings
from calliper_pipeline.training.checkpoints import EpochStats
from calliper_pipeline.training.loop import TrainResult, train
from calliper_pipeline.training.targets import (
    HeadTargets,
    index_head,
    neighbourhood_heads,
    sample_background,
)

logger = logging.getLogger(__name__)

#: Column of the POI table naming each POI's source data set (filtered by ``objective.sources``).
COL_SOURCE = "source"


@dataclass
class TrainingInputs:
    """In-memory training data for one city (see :func:`training.loop.train`).

    Rows 0..n_pois-1 of ``coords``/``text_index``/each head are the POIs (``pois``' rows, in
    order); the rest are background points.
    """

    pois: pd.DataFrame
    spec: ModelSpec
    coords: np.ndarray  # (N, 2) float32 prepared for the encoder's input space
    text_index: np.ndarray  # (N,) int64 rows of text_table: own text (background: empty text)
    text_table: np.ndarray  # (U, D) float32 distinct text embeddings
    texts: list[str]  # the U distinct texts
    heads: list[HeadTargets] | None = None  # None: the paper's single own-text head
    multi_positive: bool = False
    background_xy: np.ndarray | None = None  # (N - n_pois, 2) float64 metres

    @property
    def n_pois(self) -> int:
        return len(self.pois)


def select_pois(pois: pd.DataFrame, objective: ObjectiveConfig) -> pd.DataFrame:
    """The POIs of the configured sources (all when ``sources`` is None or no source column)."""
    if objective.sources is None or COL_SOURCE not in pois.columns:
        return pois
    return pois[pois[COL_SOURCE].isin(objective.sources)].reset_index(drop=True)


def needs_empty_text(objective: ObjectiveConfig) -> bool:
    """Whether the run pairs some point with ``objective.empty_text``."""
    return objective.name == "neighbourhood" or objective.background_fraction > 0


def run_texts(pois: pd.DataFrame, city: CitySpec, run_cfg: RunConfig) -> list[str]:
    """Every distinct text a training run needs embedded, sorted; the embedding step embeds
    these (POI descriptions of the configured sources, plus the empty text when used)."""
    texts = describe_frame(select_pois(pois, run_cfg.objective), city, run_cfg.description)
    distinct = sorted({str(t) for t in texts})
    if needs_empty_text(run_cfg.objective) and run_cfg.objective.empty_text not in distinct:
        distinct.append(run_cfg.objective.empty_text)
    return distinct


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
        heads=run_cfg.objective.heads,
        head_names=head_names(run_cfg.objective),
    )


def head_names(objective: ObjectiveConfig) -> tuple[str, ...]:
    """``("own", "r200", ...)``: the heads in model order."""
    own = ("own",) if objective.own_text_head else ()
    if objective.name != "neighbourhood":
        return own
    return own + tuple(f"r{float(r):g}" for r in objective.target_radii_m)


def count_training_points(
    con: duckdb.DuckDBPyConnection, city: CitySpec, objective: ObjectiveConfig
) -> tuple[int, str] | None:
    """(training points: POIs of the configured sources plus background points, snapshot
    hash) as :func:`training_inputs` would build them, without building them; None when the
    city has no stored POIs."""
    pois = select_pois(store.read_city_pois(con, city.key), objective)
    if pois.empty:
        return None
    n_bg = round(objective.background_fraction * len(pois))
    return len(pois) + max(n_bg, 0), str(pois[COL_SNAPSHOT_HASH].iloc[0])


def training_inputs(
    con: duckdb.DuckDBPyConnection,
    city: CitySpec,
    data_root: Path,
    text_encoder_id: str,
    run_cfg: RunConfig,
    cache_dir: Path | None = None,
) -> TrainingInputs:
    """Gather POIs, their cached text embeddings, background points, targets and coordinates.

    Args:
        cache_dir: where neighbourhood targets are cached (None: computed every time).

    Raises:
        EmptySnapshotError: the city has no stored POIs (of the configured sources).
        MissingEmbeddingError: a text of :func:`run_texts` was never embedded.
    """
    obj = run_cfg.objective
    pois = select_pois(store.read_city_pois(con, city.key), obj)
    ingest_row = store.latest_ingest(con, city.key)
    if pois.empty or ingest_row is None:
        raise EmptySnapshotError(f"no POIs stored for city {city.key!r}: ingest it first")
    epsg = int(ingest_row["metric_epsg"])
    texts = [str(t) for t in describe_frame(pois, city, run_cfg.description)]
    distinct = run_texts(pois, city, run_cfg)
    row_of = {t: i for i, t in enumerate(distinct)}
    own = np.fromiter((row_of[t] for t in texts), np.int64, len(texts))
    table = load_text_embeddings(con, text_encoder_id, [text_hash(t) for t in distinct])
    spec = model_spec(city, data_root, epsg, run_cfg, table.shape[1], text_encoder_id)
    poi_xy = np.stack([pois[COL_X].to_numpy(np.float64), pois[COL_Y].to_numpy(np.float64)], 1)
    bg_xy = np.zeros((0, 2))
    if obj.background_fraction > 0:
        n_bg = round(obj.background_fraction * len(pois))
        bg_xy = sample_background(city_boundary_m(city, data_root, epsg), n_bg, obj.background_seed)
    coords = prepare_points(spec, pois, bg_xy)
    empty = row_of.get(obj.empty_text, -1)
    own_all = np.concatenate([own, np.full(len(bg_xy), empty, np.int64)])
    heads = _heads(obj, poi_xy, own, own_all, table, bg_xy, empty, cache_dir)
    return TrainingInputs(
        pois, spec, coords, own_all, table, distinct, heads, obj.multi_positive, bg_xy
    )


def _heads(
    obj: ObjectiveConfig,
    poi_xy: np.ndarray,
    own: np.ndarray,
    own_all: np.ndarray,
    table: np.ndarray,
    bg_xy: np.ndarray,
    empty: int,
    cache_dir: Path | None,
) -> list[HeadTargets] | None:
    if obj.name == "poi" and len(bg_xy) == 0:
        return None  # the paper: train() builds its single own-text head from text_index
    heads = [index_head("own", own_all)] if obj.own_text_head else []
    if obj.name == "neighbourhood":
        query = np.concatenate([poi_xy, bg_xy])
        heads += neighbourhood_heads(
            poi_xy, own, table, query, obj.target_radii_m, empty, cache_dir, obj.empty_prior
        )
    return heads


def prepare_points(spec: ModelSpec, pois: pd.DataFrame, bg_xy: np.ndarray) -> np.ndarray:
    """(N, 2) float32 encoder input of the POIs then the background points."""
    x = np.concatenate([pois[COL_X].to_numpy(np.float64), bg_xy[:, 0]])
    y = np.concatenate([pois[COL_Y].to_numpy(np.float64), bg_xy[:, 1]])
    lon = pois[COL_LON].to_numpy(np.float64)
    lat = pois[COL_LAT].to_numpy(np.float64)
    if len(bg_xy):
        bg_lon, bg_lat = project(bg_xy[:, 0], bg_xy[:, 1], int(spec.metric_epsg), WGS84_EPSG)
        lon = np.concatenate([lon, np.asarray(bg_lon, np.float64)])
        lat = np.concatenate([lat, np.asarray(bg_lat, np.float64)])
    return prepare_coords(spec, _input_space(spec), x, y, lon, lat)


def _input_space(spec: ModelSpec) -> str:
    from calliper_pipeline.model.encodings import PE_REGISTRY

    return str(PE_REGISTRY[spec.encoder.pe].input_space)


def train_city(
    inputs: TrainingInputs,
    run_cfg: RunConfig,
    on_epoch_end: Callable[[EpochStats], None] | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool | str = False,
    show_progress: bool = False,
) -> TrainResult:
    """Train the city's location encoder (the paper's configuration by default)."""
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
        heads=inputs.heads,
        multi_positive=inputs.multi_positive,
    )
