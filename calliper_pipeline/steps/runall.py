"""One city, end to end, without an orchestrator: ingest, embed, train, evaluate, report.

``calliper run-all`` calls :func:`run_city`; the Dagster assets run the same stages one by one.
"""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import torch

from calliper_pipeline.cities.spec import CitySpec
from calliper_pipeline.config import DescriptionConfig, RunConfig
from calliper_pipeline.errors import EmptySnapshotError
from calliper_pipeline.evaluation import baselines
from calliper_pipeline.evaluation.probes import EvaluationResult, evaluate_features
from calliper_pipeline.evaluation.report import RunReport, machine_line, tidy
from calliper_pipeline.model.calliper import ModelSpec, save_model
from calliper_pipeline.steps import core as pipeline
from calliper_pipeline.store import metrics as results
from calliper_pipeline.store import pois as store
from calliper_pipeline.text.encoders import TextEncoder
from calliper_pipeline.training.loop import TrainResult

logger = logging.getLogger(__name__)
from calliper_pipeline.progress import LogFn  # noqa: E402


@dataclass
class CityRun:
    """What :func:`run_city` produced."""

    city: str
    stage_seconds: dict[str, float]
    results: list[EvaluationResult]
    trained: dict[str, TrainResult] = field(default_factory=dict)
    model_paths: dict[str, Path] = field(default_factory=dict)
    baselines: pd.DataFrame = field(default_factory=pd.DataFrame)


def machine_description() -> str:
    """CPU model, logical cores, torch threads and GPU (if any)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    threads = torch.get_num_threads()
    plural = "s" if threads != 1 else ""
    torch_info = f"torch {torch.__version__} ({threads} thread{plural})"
    return f"{cpu}, {os.cpu_count()} cores, {torch_info}, {gpu}"


def git_commit(repo: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def baseline_results(
    sets: pipeline.EvaluationSets,
    pois: pd.DataFrame,
    spec: ModelSpec,
    run_cfg: RunConfig,
    log: LogFn,
) -> list[EvaluationResult]:
    """The four baselines on the same probes: coordinates, bare PE, untrained net, POI counts."""
    categories = sorted(pois["category"].unique())
    builders: dict[str, Callable[[pipeline.LabelledPoints], np.ndarray]] = {
        "baseline: raw coordinates (min-max)": lambda p: baselines.raw_coordinate_features(
            p.x_m, p.y_m
        ),
        "baseline: grid positional encoding alone": lambda p: (
            baselines.positional_encoding_features(p.x_m, p.y_m, spec.encoder, spec.centre_m)
        ),
        "baseline: untrained grid + FCNet": lambda p: baselines.untrained_encoder_features(
            p.x_m, p.y_m, spec.encoder, spec.centre_m, seed=run_cfg.train.seed
        ),
        "baseline: POI category counts (200-2000 m, log1p)": lambda p: baselines.poi_count_features(
            p.x_m,
            p.y_m,
            pois["x_m"].to_numpy(),
            pois["y_m"].to_numpy(),
            pois["category"].to_numpy(),
            categories,
            radii_m=run_cfg.probe.count_radii_m,
        ),
    }
    out = []
    for name, fn in builders.items():
        t0 = time.perf_counter()
        out.append(_evaluate(name, fn, sets, run_cfg))
        log(f"evaluated {name} in {time.perf_counter() - t0:.1f} s")
    return out


BASELINES_MODEL = "baselines"


def cached_baselines(
    con: duckdb.DuckDBPyConnection,
    city: CitySpec,
    data_root: Path,
    run_cfg: RunConfig,
    log: LogFn = logger.info,
) -> pd.DataFrame:
    """Baseline metrics for the city's current snapshot: read from the evaluation table, or
    computed once (about a minute on 2 cores) and stored there, keyed by the snapshot hash."""
    ingest = store.latest_ingest(con, city.key)
    if ingest is None:
        raise EmptySnapshotError(f"city {city.key!r} has no ingest record")
    version = f"{ingest['snapshot_hash'][:16]}-{run_cfg.train.seed}"
    stored = results.read_evaluation(con, city.key, BASELINES_MODEL, version)
    if not stored.empty:
        log(f"baselines: {stored['encoder'].nunique()} read from the store (snapshot {version})")
        return stored
    metric_epsg = int(ingest["metric_epsg"])
    sets = pipeline.evaluation_sets(city, data_root, metric_epsg)
    if sets.empty:
        return pd.DataFrame()
    pois = pipeline.load_pois(con, city)
    spec = pipeline.model_spec(city, data_root, metric_epsg, run_cfg, 0, "none")
    frame = tidy(baseline_results(sets, pois, spec, run_cfg, log))
    results.write_evaluation(con, city.key, BASELINES_MODEL, version, None, frame)
    return frame


def _evaluate(
    name: str,
    features: Callable[[pipeline.LabelledPoints], np.ndarray],
    sets: pipeline.EvaluationSets,
    run_cfg: RunConfig,
) -> EvaluationResult:
    luc, sdm = sets.landuse, sets.socioeconomic
    return evaluate_features(
        features(luc) if luc is not None else None,
        luc,
        features(sdm) if sdm is not None else None,
        sdm,
        run_cfg.probe,
        name=name,
    )


def run_city(
    con: object,
    city: CitySpec,
    data_root: Path,
    home: Path,
    text_encoder: TextEncoder,
    run_cfg: RunConfig,
    variants: Sequence[str] = ("calliper",),
    with_baselines: bool = True,
    show_progress: bool = True,
    log: LogFn = logger.info,
) -> CityRun:
    """Ingest, embed, train (one model per description variant) and evaluate one city."""
    assert isinstance(con, duckdb.DuckDBPyConnection)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    report = pipeline.ingest(con, city, data_root, run_cfg.description)
    seconds["ingest"] = time.perf_counter() - t0
    log(
        f"ingest: {report.rows_valid:,} POIs valid, {report.rows_quarantined:,} quarantined "
        f"{dict(report.quarantined_by)}, {report.rows_filtered_out:,} filtered, "
        f"{seconds['ingest']:.1f} s"
    )
    run = CityRun(city=city.key, stage_seconds=seconds, results=[])
    sets: pipeline.EvaluationSets | None = None
    inputs: pipeline.TrainingInputs | None = None
    for variant in variants:
        cfg = replace(run_cfg, description=DescriptionConfig(variant=variant))  # type: ignore[arg-type]
        t0 = time.perf_counter()
        emb = pipeline.embed(con, city, text_encoder, cfg.description, show_progress=show_progress)
        seconds[f"embed[{variant}]"] = time.perf_counter() - t0
        log(
            f"embed[{variant}]: {emb.n_distinct:,} distinct texts, {emb.n_embedded:,} embedded, "
            f"{emb.n_cached:,} cached, {emb.seconds:.1f} s"
        )
        inputs = pipeline.training_inputs(con, city, data_root, text_encoder.encoder_id, cfg)
        t0 = time.perf_counter()
        trained = pipeline.train_city(
            inputs,
            cfg,
            checkpoint_dir=home / "checkpoints" / city.key / variant,
            show_progress=show_progress,
        )
        seconds[f"train[{variant}]"] = time.perf_counter() - t0
        run.trained[variant] = trained
        run.model_paths[variant] = save_model(
            home / "models" / f"{city.key}-{variant}.pt", trained.model
        )
        log(
            f"train[{variant}]: best epoch {trained.best_epoch} (val {trained.best_val_loss:.4f}), "
            f"{trained.seconds_per_epoch:.2f} s/epoch, {trained.pois_per_second:,.0f} POIs/s"
        )
        if sets is None:
            sets = pipeline.evaluation_sets(city, data_root, inputs.spec.metric_epsg)
        if sets.empty:
            continue
        t0 = time.perf_counter()
        name = "ours: CaLLiPer+ (names)" if variant == "calliper_plus" else "ours: CaLLiPer"
        run.results.append(_evaluate(name, pipeline.model_features(trained.model), sets, cfg))
        seconds[f"evaluate[{variant}]"] = time.perf_counter() - t0
    if with_baselines and sets is not None and not sets.empty:
        t0 = time.perf_counter()
        run.baselines = cached_baselines(con, city, data_root, run_cfg, log)
        seconds["evaluate[baselines]"] = time.perf_counter() - t0
    return run


OURS = {"calliper": "ours: CaLLiPer", "calliper_plus": "ours: CaLLiPer+ (names)"}


def machine_lines(city_key: str, df: pd.DataFrame) -> list[str]:
    """The machine-readable lines of docs/results.md for the variants present in ``df``."""
    keys = {"calliper": f"{city_key}-mlp", "calliper_plus": f"{city_key}-plus-mlp"}
    present = set(df["encoder"]) if len(df) else set()
    return [machine_line(keys[v], df, name) for v, name in OURS.items() if name in present]


def training_line(t: TrainResult) -> str:
    return (
        f"{len(t.history)} epochs on {t.device}, {t.seconds_per_epoch:.2f} s/epoch, "
        f"{t.pois_per_second:,.0f} POIs/s, best epoch {t.best_epoch} "
        f"(val loss {t.best_val_loss:.4f}), {t.n_train:,} train / {t.n_val:,} val POIs"
    )


def make_report(
    city_key: str,
    command: str,
    repo: Path,
    stage_seconds: dict[str, float],
    frame: pd.DataFrame,
    training: dict[str, str],
    title: str | None = None,
) -> RunReport:
    """The docs/results.md section for one city's run."""
    return RunReport(
        title=title or f"{city_key}: CaLLiPer (paper configuration)",
        command=command,
        commit=git_commit(repo),
        machine=machine_description(),
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        stage_seconds=stage_seconds,
        results=frame,
        machine_lines=machine_lines(city_key, frame),
        training=training,
    )


def build_report(run: CityRun, command: str, repo: Path) -> RunReport:
    """The docs/results.md section of a :func:`run_city` run."""
    frame = pd.concat([tidy(run.results), run.baselines], ignore_index=True)
    training = {f"training [{v}]": training_line(t) for v, t in run.trained.items()}
    return make_report(run.city, command, repo, run.stage_seconds, frame, training)
