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
    p.add_argument("--variant", default="calliper", choices=["calliper", "calliper_plus"])
    p.add_argument("--tiny", action="store_true", help="seconds-scale smoke settings")
    p.add_argument("-v", "--verbose", action="store_true", help="also Dagster's debug events")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    level = "DEBUG" if args.verbose else "INFO"
    if args.tiny:
        config = tiny_run_config(level)
    else:
        training = TrainingConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            device=args.device,
            bf16=args.bf16,
            description_variant=args.variant,
        )
        config = build_run_config(training, log_level=level)
    result = materialize_city(args.city, args.dagster_home, config, args.job)
    for line in summarise(result):
        logger.info(line)
    logger.info(f"run {result.run_id}: {'succeeded' if result.success else 'FAILED'}")
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
