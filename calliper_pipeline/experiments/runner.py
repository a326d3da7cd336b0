"""Run a grid of configurations x training seeds, cell by cell, resumable.

Every cell uses the steps the assets use: :func:`training.inputs.training_inputs` (with its
cached neighbourhood targets), :func:`training.inputs.train_city`, the trained encoder's
features of the evaluation points and :func:`evaluation.protocol.evaluate_features` under both
protocols. A finished cell's rows are in DuckDB (:mod:`calliper_pipeline.store.experiments`),
so a stopped grid continues where it stopped. Evaluation labels never reach training or the
choice of epoch (best validation contrastive loss).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from calliper_pipeline.cities.spec import CitySpec
from calliper_pipeline.config import flatten
from calliper_pipeline.evaluation import baselines
from calliper_pipeline.experiments.grid import Variant
from calliper_pipeline.experiments.table import BASELINE_PREFIX
from calliper_pipeline.progress import LogFn, emit
from calliper_pipeline.store import experiments as results_store
from calliper_pipeline.text.encoders import TextEncoder


@dataclass(frozen=True)
class GridSpec:
    """What a grid run needs besides the variants."""

    experiment: str
    city: CitySpec
    data_root: Path
    encoder: TextEncoder
    seeds: tuple[int, ...]
    cache_dir: Path | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)  # applied to every variant


def _evaluate(name: str, feats_fn: Any, sets: Any, probe_cfg: Any) -> pd.DataFrame:
    from calliper_pipeline.evaluation.protocol import evaluate_feature_fn

    result = evaluate_feature_fn(feats_fn, sets.landuse, sets.socioeconomic, probe_cfg, name=name)
    return result.to_frame()


def _prepare_texts(
    con: duckdb.DuckDBPyConnection, spec: GridSpec, variants: Sequence[Variant]
) -> None:
    """Embed (once, cached) every text the variants' training runs need."""
    from calliper_pipeline.steps.embed import embed

    seen = set()
    for v in variants:
        cfg = v.run_config(spec.seeds[0], spec.overrides)
        key = cfg.description
        if key in seen:
            continue
        seen.add(key)
        embed(con, spec.city, spec.encoder, cfg.description)


def run_cell(
    con: duckdb.DuckDBPyConnection, spec: GridSpec, variant: Variant, seed: int, sets: Any,
    log: LogFn | None = None,
) -> pd.DataFrame:  # fmt: skip
    """Train ``variant`` with training seed ``seed``, evaluate it, store and return its rows."""
    from calliper_pipeline.steps.assess import model_features
    from calliper_pipeline.training.inputs import train_city, training_inputs

    cfg = variant.run_config(seed, spec.overrides)
    start = time.perf_counter()
    inputs = training_inputs(
        con, spec.city, spec.data_root, spec.encoder.encoder_id, cfg, cache_dir=spec.cache_dir
    )

    def on_epoch(stats: Any) -> None:
        emit(log, f"[{variant.name} seed {seed}] epoch {stats.epoch}: val {stats.val_loss:.4f}")

    result = train_city(inputs, cfg, on_epoch_end=on_epoch)
    frame = _evaluate(variant.name, model_features(result.model), sets, cfg.probe)
    seconds = time.perf_counter() - start
    dim = int(cfg.encoder.embed_dim * cfg.objective.heads)
    info = {
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "epochs_run": len(result.history),
        "n_train": result.n_train,
        "config": {k: str(v) for k, v in flatten(cfg).items()},
    }
    results_store.write_cell(
        con, spec.experiment, spec.city.key, variant.name, seed, frame, dim, seconds, info
    )
    emit(
        log,
        f"[{variant.name} seed {seed}] done in {seconds:.0f} s (best epoch {result.best_epoch})",
    )
    return frame


def counts_name(sources: tuple[str, ...] | None) -> str:
    """The counts baseline's row name for a POI source selection (None: every source)."""
    label = "all sources" if sources is None else "+".join(sources)
    return f"{BASELINE_PREFIX}POI counts 200-2000 m ({label})"


def baseline_names(
    variants: Sequence[Variant], seed: int, extra: Mapping[str, Any] | None = None
) -> dict[str, tuple[str, ...] | None]:
    """Counts baseline per distinct POI source selection used by the variants (with the
    grid's ``extra`` overrides, as they train)."""
    out: dict[str, tuple[str, ...] | None] = {}
    for v in variants:
        sources = v.run_config(seed, extra).objective.sources
        out[counts_name(sources)] = sources
    return out


def run_baselines(
    con: duckdb.DuckDBPyConnection, spec: GridSpec, variants: Sequence[Variant], sets: Any,
    log: LogFn | None = None,
) -> None:  # fmt: skip
    """The feature baselines beside the grid (stored as configurations, training seed 0):
    POI counts over each POI selection a variant trains on, the bare grid positional encoding,
    the untrained encoder and raw coordinates."""
    from calliper_pipeline.cities.geo import city_bounds_m
    from calliper_pipeline.steps.ingest import load_pois

    cfg = variants[0].run_config(0, spec.overrides)
    pois_all = load_pois(con, spec.city)
    b = city_bounds_m(spec.city, spec.data_root, _stored_epsg(con, spec.city.key))
    centre_m = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0)  # as the trained models are centred
    builders: dict[str, Any] = {}
    for name, sources in baseline_names(variants, 0, spec.overrides).items():
        pois = pois_all if sources is None else pois_all[pois_all["source"].isin(sources)]
        fns = baselines.baseline_feature_fns(
            pois, cfg.encoder, centre_m, 0, cfg.probe.count_radii_m
        )
        builders[name] = fns[baselines.POI_COUNTS]
    for label in (baselines.POSITIONAL_ENCODING, baselines.UNTRAINED_ENCODER,
                  baselines.RAW_COORDINATES):  # fmt: skip
        builders[label] = fns[label]
    for name, fn in builders.items():
        if results_store.done(con, spec.experiment, spec.city.key, name, 0):
            emit(log, f"{name}: stored")
            continue
        start = time.perf_counter()
        widths: list[int] = []  # the feature width, read off the features the probes get

        def features(points: Any, fn: Any = fn, widths: list[int] = widths) -> np.ndarray:
            out = np.asarray(fn(points))
            widths.append(int(out.shape[1]))
            return out

        frame = _evaluate(name, features, sets, cfg.probe)
        dim = widths[0]
        seconds = time.perf_counter() - start
        results_store.write_cell(
            con, spec.experiment, spec.city.key, name, 0, frame, dim, seconds, {}
        )
        emit(log, f"{name}: evaluated in {seconds:.0f} s")


def run_grid(
    con: duckdb.DuckDBPyConnection, spec: GridSpec, variants: Sequence[Variant],
    with_baselines: bool = True, log: LogFn | None = None,
) -> pd.DataFrame:  # fmt: skip
    """Every (variant, seed) cell not stored yet, then the baselines; returns all stored rows."""
    from calliper_pipeline.steps.assess import evaluation_sets

    sets = evaluation_sets(spec.city, spec.data_root, _stored_epsg(con, spec.city.key))
    _prepare_texts(con, spec, variants)
    if with_baselines:
        run_baselines(con, spec, variants, sets, log)
    total = len(variants) * len(spec.seeds)
    n = 0
    for seed in spec.seeds:
        for variant in variants:
            n += 1
            if results_store.done(con, spec.experiment, spec.city.key, variant.name, seed):
                emit(log, f"({n}/{total}) {variant.name} seed {seed}: stored")
                continue
            emit(log, f"({n}/{total}) {variant.name} seed {seed}: training")
            run_cell(con, spec, variant, seed, sets, log)
    return results_store.read(con, spec.experiment, spec.city.key)


def _stored_epsg(con: duckdb.DuckDBPyConnection, city_key: str) -> int:
    from calliper_pipeline.store.pois import latest_ingest

    row = latest_ingest(con, city_key)
    if row is None:
        raise ValueError(f"city {city_key!r} was never ingested")
    return int(row["metric_epsg"])
