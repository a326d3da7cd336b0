"""Tracked stages: the pipeline's stages with their MLflow run, registry version and figures.

:mod:`calliper_pipeline.steps.core` holds the plain stages; these compose them with
:mod:`calliper_pipeline.tracking.registry` (the only MLflow module) and the figure modules
into what one orchestration step does: ingest and profile a snapshot, train and register a
model (one MLflow run).
Evaluating and mapping a registered version are in :mod:`calliper_pipeline.steps.assess`.
Each takes explicit paths, configs and a :class:`registry.TrackingConfig`, and returns a small
outcome record for metadata.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from calliper_pipeline.cities.spec import CitySpec
from calliper_pipeline.config import DescriptionConfig, RunConfig, TrainConfig, flatten
from calliper_pipeline.constants import (
    COL_SNAPSHOT_HASH,
    COL_SOURCE_ROW,
    COL_X,
    COL_Y,
    POI_COLUMNS,
    POIS_TABLE,
)
from calliper_pipeline.errors import ConfigError
from calliper_pipeline.ingest import quality
from calliper_pipeline.ingest.snapshot import IngestReport
from calliper_pipeline.model.calliper import CalliperModel
from calliper_pipeline.steps import core as pipeline
from calliper_pipeline.tracking import registry
from calliper_pipeline.tracking.registry import RegisteredVersion, RunHandle, TrackingConfig
from calliper_pipeline.training.loop import EpochStats, split_indices

logger = logging.getLogger(__name__)
from calliper_pipeline.progress import LogFn  # noqa: E402


# ------------------------------------------------------------------------------ ingestion
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
    """:func:`pipeline.ingest`, then record the category mix (for drift) and sample the rows."""
    report = pipeline.ingest(con, city, data_root, desc_cfg)
    mix = quality.record_category_mix(con, city.key)
    cols = ", ".join(f'"{c}"' for c in POI_COLUMNS)
    sample = con.execute(
        f"SELECT {cols} FROM {POIS_TABLE} WHERE city = ? ORDER BY {COL_SOURCE_ROW} LIMIT ?",
        [city.key, sample_rows],
    ).df()
    return IngestOutcome(report=report, sample=sample, category_mix=mix)


# ------------------------------------------------------------------------------ MLflow runs
def attach_run(tracking: TrackingConfig, run_id: str, city: str) -> RunHandle:
    """A handle on an existing (possibly finished) run, to log more metrics and artifacts."""
    client = tracking.client()
    run = client.get_run(run_id)
    return RunHandle(
        tracking=tracking,
        run_id=run_id,
        experiment_id=str(run.info.experiment_id),
        city=city,
        client=client,
        ended=True,
    )


def load_registered_model(tracking: TrackingConfig, model_uri: str) -> CalliperModel:
    """The CalliperModel inside a registered pyfunc (``models:/calliper_<city>/<version>``)."""
    from calliper_pipeline.tracking.pyfunc import CalliperPyfunc

    inner = registry.load_pyfunc(tracking, model_uri).unwrap_python_model()
    if not isinstance(inner, CalliperPyfunc) or inner.model is None:
        raise ConfigError(f"{model_uri} is not a CaLLiPer pyfunc model")
    return inner.model


# ------------------------------------------------------------------------------ training
@dataclass(frozen=True)
class TrainingOutcome:
    """One training materialisation: the MLflow run, the registered version, the figures."""

    version: RegisteredVersion
    run_id: str
    run_url: str | None
    snapshot_hash: str
    history: tuple[EpochStats, ...]
    best_epoch: int
    best_val_loss: float
    seconds_per_epoch: float
    pois_per_second: float
    n_train: int
    n_val: int
    n_texts: int
    stopped_early: bool
    curve_png: Path
    retrieval: dict[str, float] = field(default_factory=dict)


def validation_retrieval(
    model: CalliperModel,
    inputs: pipeline.TrainingInputs,
    cells: pd.DataFrame,
    cfg: TrainConfig,
    max_distance_m: float = 350.0,
) -> dict[str, float]:
    """Text-to-location retrieval on the training run's validation POIs (recall at k % of cells,
    ``recall_at_1pct`` ..., median rank, MRR).

    The validation split is the one :func:`train.train` drew (same ``val_fraction`` and seed).
    POIs farther than ``max_distance_m`` from every cell centre are left out; {} if none remain.
    """
    from calliper_pipeline.evaluation.retrieval import (
        assign_cells,
        cell_embeddings,
        retrieval_metrics,
    )

    _, val_idx = split_indices(len(inputs.coords), cfg.val_fraction, cfg.seed)
    x = inputs.pois[COL_X].to_numpy(np.float64)[val_idx]
    y = inputs.pois[COL_Y].to_numpy(np.float64)[val_idx]
    cell_idx = assign_cells(x, y, cells, max_distance_m=max_distance_m)
    keep = cell_idx >= 0
    if not keep.any():
        return {}
    text = inputs.text_table[inputs.text_index[val_idx[keep]]]
    loc = cell_embeddings(model, cells)
    metrics = retrieval_metrics(model, text, cell_idx[keep], loc)
    # "recall@1%" -> "recall_at_1pct": one spelling that MLflow keys and Dagster labels accept
    return {k.replace("@", "_at_").replace("%", "pct"): v for k, v in metrics.items()}


def _epoch_line(stats: EpochStats, epochs: int) -> str:
    best = " *best*" if stats.is_best else ""
    return (
        f"epoch {stats.epoch}/{epochs}: train {stats.train_loss:.4f}, val {stats.val_loss:.4f}, "
        f"temperature {stats.temperature:.4f}, {stats.seconds:.1f} s{best}"
    )


def train_and_register(
    inputs: pipeline.TrainingInputs,
    city: CitySpec,
    data_root: Path,
    run_cfg: RunConfig,
    tracking: TrackingConfig,
    out_dir: Path,
    *,
    dagster_run_id: str | None,
    code_version: str,
    log: LogFn | None = None,
) -> TrainingOutcome:
    """Train ``city``'s encoder in one MLflow run and register it (alias ``candidate``).

    Logs params (``config.flatten(run_cfg)`` plus data sizes), per-epoch metrics, summary
    metrics (best epoch and validation loss, seconds per epoch, POIs per second, retrieval on
    the validation POIs), the training-curve PNG (also written to ``out_dir``) and the model.
    A failure marks the run FAILED and registers nothing.
    """
    from calliper_pipeline.cities.cells import load_cells
    from calliper_pipeline.maps.figures import training_curve_figure

    snapshot_hash = str(inputs.pois[COL_SNAPSHOT_HASH].iloc[0])
    params = {
        **flatten(run_cfg),
        "data.n_pois": len(inputs.pois),
        "data.n_texts": len(inputs.texts),
        "data.text_encoder_id": inputs.spec.text_encoder_id,
        "data.metric_epsg": inputs.spec.metric_epsg,
    }
    handle = registry.start_training_run(
        tracking, city.key, snapshot_hash, dagster_run_id, code_version, params
    )
    with handle:
        epoch_logger = registry.epoch_logger(handle)

        def on_epoch(stats: EpochStats) -> None:
            epoch_logger(stats)
            if log is not None:
                log(_epoch_line(stats, run_cfg.train.epochs))

        result = pipeline.train_city(inputs, run_cfg, on_epoch_end=on_epoch)
        cells = load_cells(city, data_root, inputs.spec.metric_epsg)
        retrieval = validation_retrieval(result.model, inputs, cells, run_cfg.train)
        summary = {
            "best_epoch": float(result.best_epoch),
            "best_val_loss": result.best_val_loss,
            "seconds_per_epoch": result.seconds_per_epoch,
            "pois_per_second": result.pois_per_second,
            "train_seconds": result.seconds,
            **{f"retrieval.{k}": v for k, v in retrieval.items()},
        }
        registry.log_metrics(handle, summary)
        out_dir.mkdir(parents=True, exist_ok=True)
        curve_png = out_dir / "training_curve.png"
        fig = training_curve_figure(result.history, title=f"{city.name}: training", path=curve_png)
        fig.clear()
        registry.log_figure_png(handle, curve_png)
        if log is not None:
            log(f"logging and registering the model of run {handle.run_id}")
        version = registry.log_and_register_model(handle, result.model, city.key)
    return TrainingOutcome(
        version=version,
        run_id=handle.run_id,
        run_url=registry.run_url(tracking, handle.run_id),
        snapshot_hash=snapshot_hash,
        history=tuple(result.history),
        best_epoch=result.best_epoch,
        best_val_loss=result.best_val_loss,
        seconds_per_epoch=result.seconds_per_epoch,
        pois_per_second=result.pois_per_second,
        n_train=result.n_train,
        n_val=result.n_val,
        n_texts=len(inputs.texts),
        stopped_early=result.stopped_early,
        curve_png=curve_png,
        retrieval=retrieval,
    )
