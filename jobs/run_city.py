"""Materialise a city's whole chain through Dagster against the persistent local instance.

``python -m jobs.run_city --city london`` runs job ``city_refresh`` for one partition in this
process, recording the run in the instance under ``<CALLIPER_HOME>/dagster`` (the
``DAGSTER_HOME`` that ``dagster dev`` should use to show it). Progress (``context.log`` lines)
streams to the console.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from assets.config import EvaluationConfig, MapsConfig, TrainingConfig
from calliper_pipeline import settings
from jobs.definitions import CITY_REFRESH_JOB, RETRAIN_JOB, build_definitions

logger = logging.getLogger("calliper.run_city")

DAGSTER_YAML = """\
# Written by jobs.run_city. DuckDB admits one writing process: the assets that open the
# warehouse share the pool 'duckdb', one op at a time across all runs.
concurrency:
  pools:
    default_limit: 1
    granularity: op
telemetry:
  enabled: false
"""


def ensure_dagster_home(path: Path) -> Path:
    """Create the instance folder with its ``dagster.yaml`` (kept if it exists)."""
    path = Path(path).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    config = path / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML, encoding="utf-8")
    return path


def build_run_config(
    training: TrainingConfig | None = None,
    evaluation: EvaluationConfig | None = None,
    maps: MapsConfig | None = None,
    log_level: str = "INFO",
) -> dict[str, Any]:
    """Run config for ``city_refresh``/``retrain``: the same description variant for the text
    embeddings and the training, and the console log level."""
    training = training or TrainingConfig()
    ops: dict[str, Any] = {
        "text_embeddings": {"config": {"description_variant": training.description_variant}},
        "calliper_model": {"config": training.model_dump()},
    }
    if evaluation is not None:
        for name in ("land_use_evaluation", "socioeconomic_evaluation"):
            ops[name] = {"config": evaluation.model_dump()}
    if maps is not None:
        ops["embedding_maps"] = {"config": maps.model_dump()}
    return {"ops": ops, "loggers": {"console": {"config": {"log_level": log_level}}}}


def tiny_run_config(log_level: str = "INFO") -> dict[str, Any]:
    """Seconds-scale settings for smoke tests (2 epochs, a small encoder, one probe seed)."""
    return build_run_config(
        TrainingConfig(epochs=2, batch_size=256, hidden_dim=32, num_layers=1, frequency_num=8),
        EvaluationConfig(seeds=[42], max_epochs=5),
        MapsConfig(queries=["a place of pubs, a type of eating and drinking"], width_px=600),
        log_level=log_level,
    )


def materialize_city(
    city_key: str,
    instance_home: Path | None = None,
    run_config: Mapping[str, Any] | None = None,
    job_name: str = CITY_REFRESH_JOB,
    defs: dg.Definitions | None = None,
) -> dg.ExecuteInProcessResult:
    """Run ``job_name`` for partition ``city_key`` in this process, recorded in the instance
    at ``instance_home`` (default ``<CALLIPER_HOME>/dagster``). Does not raise on a failed
    step: check ``result.success``. Op config for ops outside the job is dropped."""
    s = settings.from_env()
    home = ensure_dagster_home(instance_home or s.dagster_home)
    defs = defs or build_definitions(s)
    job = defs.resolve_job_def(job_name)
    config = dict(run_config) if run_config is not None else build_run_config()
    if "ops" in config:  # keep the config of the ops this job has (retrain: no text_embeddings)
        config["ops"] = {k: v for k, v in config["ops"].items() if job.graph.has_node_named(k)}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = job.execute_in_process(
            run_config=config, instance=instance, partition_key=city_key, raise_on_error=False
        )
    return result


def summarise(result: dg.ExecuteInProcessResult) -> list[str]:
    """One line per materialisation and check, for the console."""
    lines = []
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        lines.append(f"materialised {mat.asset_key.to_user_string()}[{mat.partition}]")
    for check in result.get_asset_check_evaluations():
        verdict = "passed" if check.passed else f"FAILED ({check.severity.value})"
        lines.append(f"check {check.check_name}: {verdict}")
    return lines


def _materialisation_metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        if mat.asset_key.to_user_string() == asset:
            return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    return {}


def step_seconds(home: Path, run_id: str) -> dict[str, float]:
    """Wall seconds per step of a finished run, from the instance's event log."""
    with dg.DagsterInstance.from_config(str(ensure_dagster_home(home))) as instance:
        stats = instance.get_run_step_stats(run_id)
    return {
        s.step_key: float(s.end_time - s.start_time)
        for s in stats
        if s.start_time is not None and s.end_time is not None
    }


def write_report(
    city_key: str,
    runs: Mapping[str, dg.ExecuteInProcessResult],
    training: TrainingConfig,
    home: Path,
    results_path: Path,
    command: str,
) -> str:
    """Our stored metrics for each variant's version, the cached baselines and the paper's rows,
    written as the city's section of ``results_path``; returns the Markdown."""
    import pandas as pd

    from calliper_pipeline.cities.spec import get_city, load_city_registry
    from calliper_pipeline.steps import runall
    from calliper_pipeline.store import metrics as results
    from calliper_pipeline.store import pois as store
    from jobs.cli.commands import write_results

    s = settings.from_env()
    city = get_city(city_key, load_city_registry(s.city_files))
    frames, seconds, lines = [], {}, {}
    for variant, result in runs.items():
        meta = _materialisation_metadata(result, "calliper_model")
        with store.connect(s.warehouse, read_only=True) as con:
            ours = results.read_evaluation(
                con, city_key, str(meta["model_name"]), str(meta["model_version"])
            )
        frames.append(ours.assign(encoder=runall.OURS[variant]))
        for step, sec in step_seconds(home, result.run_id).items():
            seconds[f"{step}[{variant}]"] = sec
        lines[f"training [{variant}]"] = (
            f"{meta['model_uri']}: {int(meta['epochs_run'])} epochs, "
            f"{meta['seconds_per_epoch']:.2f} s/epoch, {meta['pois_per_second']:,.0f} POIs/s, "
            f"best epoch {int(meta['best_epoch'])} (val loss {meta['best_val_loss']:.4f}), "
            f"{int(meta['n_train']):,} train / {int(meta['n_val']):,} val POIs; retrieval "
            f"recall@1% {100 * meta.get('retrieval_recall_at_1pct', float('nan')):.1f}, "
            f"@5% {100 * meta.get('retrieval_recall_at_5pct', float('nan')):.1f}, "
            f"@10% {100 * meta.get('retrieval_recall_at_10pct', float('nan')):.1f}, median rank "
            f"{meta.get('retrieval_median_rank_pct', float('nan')):.1f} % of cells"
        )
    t0 = time.perf_counter()
    with store.connect(s.warehouse) as con:
        frames.append(runall.cached_baselines(con, city, s.data_root, training.run_config()))
    seconds["baselines"] = time.perf_counter() - t0
    frame = pd.concat(frames, ignore_index=True)
    report = runall.make_report(city_key, command, settings.REPO_ROOT, seconds, frame, lines)
    text = report.markdown()
    write_results(results_path, city_key, text)
    return text


def main(argv: list[str] | None = None) -> int:
    defaults = TrainingConfig()
    p = argparse.ArgumentParser(prog="python -m jobs.run_city", description=__doc__)
    p.add_argument("--city", default="london", help="partition (city key)")
    p.add_argument("--job", default=CITY_REFRESH_JOB, choices=[CITY_REFRESH_JOB, RETRAIN_JOB])
    p.add_argument("--dagster-home", type=Path, help="instance folder (<CALLIPER_HOME>/dagster)")
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--device", default=defaults.device, help="cpu | cuda")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA only)")
    p.add_argument(
        "--early-stopping",
        type=int,
        default=defaults.early_stopping_patience,
        metavar="EPOCHS",
        help="stop after this many epochs without validation improvement",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: auto)")
    p.add_argument(
        "--variants",
        default="calliper",
        help="comma-separated description variants, one run each: calliper, calliper_plus",
    )
    p.add_argument("--results", type=Path, help="write the results table to this Markdown file")
    p.add_argument("--tiny", action="store_true", help="seconds-scale smoke settings")
    p.add_argument("-v", "--verbose", action="store_true", help="also Dagster's debug events")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    level = "DEBUG" if args.verbose else "INFO"
    home = args.dagster_home or settings.from_env().dagster_home
    runs: dict[str, dg.ExecuteInProcessResult] = {}
    training = defaults
    for variant in args.variants.split(","):
        if args.tiny:
            config = tiny_run_config(level)
        else:
            training = TrainingConfig(
                epochs=args.epochs,
                batch_size=args.batch_size,
                device=args.device,
                bf16=args.bf16,
                early_stopping_patience=args.early_stopping,
                num_threads=args.threads,
                description_variant=variant,
            )
            config = build_run_config(training, log_level=level)
        result = materialize_city(args.city, home, config, args.job)
        for line in summarise(result):
            logger.info(line)
        logger.info(
            f"run {result.run_id} [{variant}]: {'succeeded' if result.success else 'FAILED'}"
        )
        if not result.success:
            return 1
        runs[variant] = result
    if args.results:
        command = "python -m jobs.run_city " + " ".join(argv if argv is not None else sys.argv[1:])
        print(write_report(args.city, runs, training, home, args.results, command))
        logger.info(f"results written to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
