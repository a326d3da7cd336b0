"""The training step: train a city's encoder in one MLflow run and register the model.

Called by the ``calliper_model`` asset and ``calliper train``; the model is always a registered
version of ``calliper_<city>`` (alias ``candidate``).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from calliper_pipeline.cities.spec import CitySpec
from calliper_pipeline.config import RunConfig, TrainConfig, flatten
from calliper_pipeline.constants import COL_SNAPSHOT_HASH, COL_X, COL_Y
from calliper_pipeline.model.calliper import CalliperModel
from calliper_pipeline.progress import LogFn
from calliper_pipeline.steps import reuse as reuse_step
from calliper_pipeline.tracking import label_free, registry, runs
from calliper_pipeline.tracking.label_free import HeldOut
from calliper_pipeline.tracking.registry import RegisteredVersion
from calliper_pipeline.tracking.runs import TrackingConfig
from calliper_pipeline.training.batches import split_indices
from calliper_pipeline.training.checkpoints import EpochStats
from calliper_pipeline.training.inputs import TrainingInputs, train_city
from calliper_pipeline.training.loop import TrainResult
from calliper_pipeline.training.sizing import size_for_city

logger = logging.getLogger(__name__)


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
    heldout: HeldOut | None = None  # label-free measures, candidate and champion
    sizing: str = ""  # what size_for_city chose ("" when the settings were used as given)
    run_cfg: RunConfig | None = None  # the settings trained with (after sizing)
    reused: bool = False  # an earlier registered version with the same training key


def validation_retrieval(
    model: CalliperModel,
    inputs: TrainingInputs,
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
    val_idx = val_idx[val_idx < inputs.n_pois]  # background points have no POI text or cell
    x = inputs.pois[COL_X].to_numpy(np.float64)[val_idx]
    y = inputs.pois[COL_Y].to_numpy(np.float64)[val_idx]
    cell_idx = assign_cells(x, y, cells, max_distance_m=max_distance_m)
    keep = cell_idx >= 0
    if not keep.any():
        return {}
    loc = cell_embeddings(model, cells)  # POIs share texts: each distinct text scored once
    metrics = retrieval_metrics(
        model, inputs.text_table, cell_idx[keep], loc, text_index=inputs.text_index[val_idx[keep]]
    )
    # "recall@1%" -> "recall_at_1pct": one spelling that MLflow keys and Dagster labels accept
    return {k.replace("@", "_at_").replace("%", "pct"): v for k, v in metrics.items()}


def _epoch_line(stats: EpochStats, epochs: int) -> str:
    best = " *best*" if stats.is_best else ""
    return (
        f"epoch {stats.epoch}/{epochs}: train {stats.train_loss:.4f}, val {stats.val_loss:.4f}, "
        f"temperature {stats.temperature:.4f}, {stats.seconds:.1f} s{best}"
    )


def _log_summary(
    handle: runs.RunHandle,
    result: TrainResult,
    inputs: TrainingInputs,
    city: CitySpec,
    data_root: Path,
    run_cfg: RunConfig,
    out_dir: Path,
    cells: pd.DataFrame,
) -> tuple[dict[str, float], Path]:
    """Log the run's summary metrics (with validation retrieval) and the training curve."""
    from calliper_pipeline.maps.charts import training_curve_figure

    retrieval = validation_retrieval(result.model, inputs, cells, run_cfg.train)
    summary = {
        "best_epoch": float(result.best_epoch),
        "best_val_loss": result.best_val_loss,
        "seconds_per_epoch": result.seconds_per_epoch,
        "pois_per_second": result.pois_per_second,
        "train_seconds": result.seconds,
        **{f"retrieval.{k}": v for k, v in retrieval.items()},
    }
    runs.log_metrics(handle, summary)
    out_dir.mkdir(parents=True, exist_ok=True)
    curve_png = out_dir / "training_curve.png"
    fig = training_curve_figure(result.history, title=f"{city.name}: training", path=curve_png)
    fig.clear()
    runs.log_figure_png(handle, curve_png)
    return retrieval, curve_png


def _sized_key(
    run_cfg: RunConfig,
    n_points: int,
    snapshot_hash: str,
    text_encoder_id: str,
    code_version: str,
    explicit: Collection[str] | None,
    log: LogFn | None,
) -> tuple[RunConfig, str, str | None]:
    """(settings sized for ``n_points`` training points, the sizing sentence, training key)."""
    sizing = ""
    if explicit is not None:
        sized, sizing = size_for_city(run_cfg.train, n_points, explicit)
        run_cfg = replace(run_cfg, train=sized)
        if log is not None:
            log(f"training settings from the city's size: {sizing}")
    key = reuse_step.training_key(run_cfg, snapshot_hash, text_encoder_id, code_version)
    return run_cfg, sizing, key


def _reused(
    tracking: TrackingConfig,
    city_key: str,
    key: str | None,
    out_dir: Path,
    run_cfg: RunConfig,
    sizing: str,
    log: LogFn | None,
) -> TrainingOutcome | None:
    found = reuse_step.find(tracking, city_key, key, out_dir)
    if found is None:
        return None
    if log is not None:
        log(
            f"reusing {found.version.model_uri}: same snapshot, settings, text encoder "
            f"and code (training key {key}); nothing to train"
        )
    return replace(found, reused=True, sizing=sizing, run_cfg=run_cfg)


def find_reusable(
    con: duckdb.DuckDBPyConnection,
    city: CitySpec,
    run_cfg: RunConfig,
    text_encoder_id: str,
    tracking: TrackingConfig,
    out_dir: Path,
    *,
    code_version: str,
    explicit: Collection[str] | None = None,
    log: LogFn | None = None,
) -> TrainingOutcome | None:
    """The registered version :func:`train_and_register` would reuse, found before the
    training inputs are built (their targets, background points and encodings take seconds
    to minutes): the key needs only the number of training points and the snapshot hash,
    both read from the store. None: nothing to reuse (or the city was never ingested; the
    training step then says why)."""
    from calliper_pipeline.training.inputs import count_training_points

    counted = count_training_points(con, city, run_cfg.objective)
    if counted is None:
        return None
    n_points, snapshot_hash = counted
    sized_cfg, sizing, key = _sized_key(
        run_cfg, n_points, snapshot_hash, text_encoder_id, code_version, explicit, None
    )
    if key is None:
        return None
    found = _reused(tracking, city.key, key, out_dir, sized_cfg, sizing, None)
    if found is not None and log is not None:
        if sizing:
            log(f"training settings from the city's size: {sizing}")
        log(
            f"reusing {found.version.model_uri}: same snapshot, settings, text encoder and "
            f"code (training key {key}); nothing to train, training inputs not built"
        )
    return found


def train_and_register(
    inputs: TrainingInputs,
    city: CitySpec,
    data_root: Path,
    run_cfg: RunConfig,
    tracking: TrackingConfig,
    out_dir: Path,
    *,
    dagster_run_id: str | None,
    code_version: str,
    log: LogFn | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool | str = False,
    explicit: Collection[str] | None = None,
    reuse: bool = False,
) -> TrainingOutcome:
    """Train ``city``'s encoder in one MLflow run and register it (alias ``candidate``).

    Logs params (``config.flatten(run_cfg)`` plus data sizes), per-epoch metrics, summary
    metrics (best epoch and validation loss, seconds per epoch, POIs per second, retrieval on
    the validation POIs), the training-curve PNG (also written to ``out_dir``) and the model.
    A failure marks the run FAILED and registers nothing.

    ``explicit``: the training settings the operator set (flat names); the others are sized
    for the city (:func:`training.sizing.size_for_city`: batch and early stopping of a small
    city), and the choice is logged, tagged ``train.sizing`` and returned as ``sizing``.
    None: ``run_cfg`` is used exactly as given (experiment grids, tests).

    With ``reuse``, a registered version trained with the same key (:mod:`.reuse`: snapshot,
    settings after sizing, text encoder, commit) is returned instead of training again.
    """
    snapshot_hash = str(inputs.pois[COL_SNAPSHOT_HASH].iloc[0])
    run_cfg, sizing, key = _sized_key(
        run_cfg, len(inputs.coords), snapshot_hash, inputs.spec.text_encoder_id,
        code_version, explicit, log,
    )  # fmt: skip
    if reuse:
        found = _reused(tracking, city.key, key, out_dir, run_cfg, sizing, log)
        if found is not None:
            return found
    params = {
        **flatten(run_cfg),
        "data.n_pois": len(inputs.pois),
        "data.n_texts": len(inputs.texts),
        "data.text_encoder_id": inputs.spec.text_encoder_id,
        "data.metric_epsg": inputs.spec.metric_epsg,
    }
    handle = runs.start_training_run(
        tracking, city.key, snapshot_hash, dagster_run_id, code_version, params
    )
    with handle:
        if sizing:
            runs.set_run_tags(handle, {"train.sizing": sizing})
        epoch_logger = runs.epoch_logger(handle)

        def on_epoch(stats: EpochStats) -> None:
            epoch_logger(stats)
            if log is not None:
                log(_epoch_line(stats, run_cfg.train.epochs))

        result = train_city(
            inputs, run_cfg, on_epoch_end=on_epoch, checkpoint_dir=checkpoint_dir, resume=resume
        )
        resumed = int(result.extra.get("resumed_after_epoch", 0))
        if resumed and log is not None:
            log(f"resumed from the checkpoint in {checkpoint_dir} after epoch {resumed}")
        from calliper_pipeline.cities.cells import load_cells

        cells = load_cells(city, data_root, inputs.spec.metric_epsg)
        retrieval, curve_png = _log_summary(
            handle, result, inputs, city, data_root, run_cfg, out_dir, cells
        )
        heldout = _measure_heldout(
            handle, result.model, inputs, run_cfg, cells, (retrieval, result.best_val_loss), log
        )
        if log is not None:
            log(f"logging and registering the model of run {handle.run_id}")
        version = registry.log_and_register_model(handle, result.model, city.key)
        label_free.record_heldout(tracking, city.key, version.version, heldout)
        outcome = TrainingOutcome(
            version=version,
            run_id=handle.run_id,
            run_url=runs.run_url(tracking, handle.run_id),
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
            heldout=heldout,
            sizing=sizing,
            run_cfg=run_cfg,
        )
        reuse_step.record(handle, outcome, key)
    return outcome


def _measure_heldout(
    handle: runs.RunHandle,
    model: CalliperModel,
    inputs: TrainingInputs,
    run_cfg: RunConfig,
    cells: pd.DataFrame,
    measured: tuple[dict[str, float], float],
    log: LogFn | None,
) -> HeldOut:
    """The label-free gate's measures (:mod:`.heldout`), logged as ``heldout.*`` metrics;
    ``measured``: the candidate's validation retrieval and best validation loss, which
    training has already computed on the same held-out points."""
    from calliper_pipeline.steps.heldout import measure_against_champion

    retrieval, val_loss = measured

    def score(m: CalliperModel) -> dict[str, float]:
        return retrieval if m is model else validation_retrieval(m, inputs, cells, run_cfg.train)

    heldout = measure_against_champion(
        model, inputs, run_cfg.train, score, handle.tracking, handle.city, val_loss
    )
    numbers = {k: getattr(heldout, k) for k in ("val_loss", "recall_at_1pct",
               "incumbent_val_loss", "incumbent_recall_at_1pct")}  # fmt: skip
    runs.log_metrics(handle, {f"heldout.{k}": v for k, v in numbers.items() if v is not None})
    if log is not None:
        h = heldout
        line = f"held-out POIs: val loss {h.val_loss:.4f}, recall@1% {h.recall_at_1pct:.3f}"
        if h.incumbent_val_loss is not None:
            line += (
                f"; champion v{h.incumbent_version}: val loss {h.incumbent_val_loss:.4f}, "
                f"recall@1% {h.incumbent_recall_at_1pct:.3f}"
            )
        elif heldout.note:
            line += f"; champion v{heldout.incumbent_version} not measured: {heldout.note}"
        log(line)
    return heldout
