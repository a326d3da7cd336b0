"""Materialise a city's whole asset graph through Dagster against the project's instance.

This is the one end-to-end path of the command line: ``calliper run`` (and ``make run``, and
``python -m jobs.run_city``) runs job ``city_refresh`` for one partition in this process,
recorded in the instance under ``<CALLIPER_HOME>/dagster`` (the ``DAGSTER_HOME`` that
``dagster dev`` uses to show it), so the run registers in MLflow, runs the asset checks and goes
through the champion gate exactly as a schedule tick or a UI launch would. Progress
(``context.log`` lines) streams to the console. The results report is then written from what
the evaluation and baseline assets stored.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from assets.config import EvaluationConfig, MapsConfig, TrainingConfig
from calliper_pipeline import settings
from calliper_pipeline.errors import one_line
from jobs.definitions import CITY_REFRESH_JOB, build_definitions
from jobs.origin import CLI, PYTHON_API, RUN_CITY_MODULE, door_tags

logger = logging.getLogger("calliper.run_city")

DAGSTER_YAML = """\
# Written by jobs.run_city. DuckDB admits one writing process per file: the assets that open
# a city's store file share the pool 'duckdb', one op at a time across all runs.
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
        for name in ("land_use_evaluation", "socioeconomic_evaluation", "baselines"):
            ops[name] = {"config": evaluation.model_dump()}
    if maps is not None:
        ops["embedding_maps"] = {"config": maps.model_dump()}
    return {"ops": ops, "loggers": {"console": {"config": {"log_level": log_level}}}}


# seconds-scale smoke settings: the same graph, tiny model, one probe seed
TINY_TRAINING: dict[str, Any] = {
    "epochs": 2,
    "batch_size": 256,
    "hidden_dim": 32,
    "num_layers": 1,
    "frequency_num": 8,
}


def tiny_run_config(
    log_level: str = "INFO",
    description_variant: str = "calliper",
    preset: str = "default",
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Seconds-scale settings for smoke tests (2 epochs, a small encoder, one probe seed);
    ``overrides`` (e.g. ``{"device": "cuda"}``) apply on top of the tiny ones."""
    training = TrainingConfig(
        preset=preset,
        description_variant=description_variant,  # type: ignore[arg-type]
        **{**TINY_TRAINING, **dict(overrides or {})},
    )
    return build_run_config(
        training,
        EvaluationConfig(seeds=[42], max_epochs=5),
        MapsConfig(width_px=600),  # the city's own queries
        log_level=log_level,
    )


def materialize_city(
    city_key: str,
    instance_home: Path | None = None,
    run_config: Mapping[str, Any] | None = None,
    job_name: str = CITY_REFRESH_JOB,
    defs: dg.Definitions | None = None,
    s: settings.Settings | None = None,
    launched_by: str = PYTHON_API,
) -> dg.ExecuteInProcessResult:
    """Run ``job_name`` for partition ``city_key`` in this process, recorded in the instance
    at ``instance_home`` (default ``<home>/dagster``). ``s``: the paths and city files
    (default: from the environment); ``launched_by``: the door, tagged on the run (see
    :mod:`jobs.origin`). Does not raise on a failed step: check ``result.success``. Op config
    for ops outside the job is dropped."""
    s = s or settings.from_env()
    home = ensure_dagster_home(instance_home or s.dagster_home)
    defs = defs or build_definitions(s)
    job = defs.resolve_job_def(job_name)
    config = dict(run_config) if run_config is not None else build_run_config()
    if "ops" in config:  # keep the config of the ops this job has (retrain: no text_embeddings)
        config["ops"] = {k: v for k, v in config["ops"].items() if job.graph.has_node_named(k)}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = job.execute_in_process(
            run_config=config,
            instance=instance,
            partition_key=city_key,
            raise_on_error=False,
            tags=door_tags(launched_by),
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


def failures(result: dg.ExecuteInProcessResult) -> list[str]:
    """One line per failed step: the step and its message (a Failure's one-line description,
    else the first line of the error)."""
    lines = []
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        message = data.user_failure_data.description if data.user_failure_data else None
        if not message and data.error is not None:
            message = data.error.message.strip().splitlines()[0]
        lines.append(f"{event.step_key}: {one_line(message or 'failed')}")
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


def _training_line(meta: Mapping[str, Any]) -> str:
    nan = float("nan")
    return (
        f"{meta['model_uri']}: {int(meta['epochs_run'])} epochs, "
        f"{meta['seconds_per_epoch']:.2f} s/epoch, best epoch {int(meta['best_epoch'])} "
        f"(val loss {meta['best_val_loss']:.4f}), {int(meta['n_train']):,} train / "
        f"{int(meta['n_val']):,} val points; retrieval recall@1% "
        f"{100 * meta.get('retrieval_recall_at_1pct', nan):.1f}, "
        f"@10% {100 * meta.get('retrieval_recall_at_10pct', nan):.1f}"
    )


def write_report(
    city_key: str,
    runs: Mapping[str, dg.ExecuteInProcessResult],
    preset: str,
    home: Path,
    results_path: Path,
    command: str,
    s: settings.Settings | None = None,
    evaluation: EvaluationConfig | None = None,
) -> str:
    """The city's section of ``results_path`` from what the runs' assets stored (evaluation
    rows of each registered version, the cached baselines); returns the Markdown. ``s``: the
    paths and city files (default: from the environment); ``evaluation``: the probe settings
    the runs' ``baselines`` asset used (default: the defaults), which key the cached rows."""
    from assets.evaluation import _baseline_config
    from calliper_pipeline.cities.spec import get_city, load_city_registry
    from calliper_pipeline.steps.report import city_report
    from jobs.cli.results import write_section

    s = s or settings.from_env()
    city = get_city(city_key, load_city_registry(s.city_files))
    versions, seconds, lines, figures, gates = {}, {}, {}, {}, {}
    for variant, result in runs.items():
        meta = _materialisation_metadata(result, "calliper_model")
        versions[variant] = (str(meta["model_name"]), str(meta["model_version"]))
        figures[variant] = meta
        gate = _materialisation_metadata(result, "calliper_champion")
        if gate:
            gates[variant] = f"{gate.get('gate', '?')}: {gate.get('decision', '?')}"
        lines[f"training [{variant}]"] = _training_line(meta)
        for step, sec in step_seconds(home, result.run_id).items():
            seconds[f"{step}[{variant}]"] = sec
    baseline_cfg = _baseline_config(evaluation or EvaluationConfig())  # as the asset keyed them
    title = f"{city.name}: `{preset}` preset, through Dagster"
    with s.store().connect(city_key) as con:
        report = city_report(
            con, city, s.data_root, versions, baseline_cfg, seconds, lines, command,
            settings.REPO_ROOT, title, figures=figures, gates=gates,
        )  # fmt: skip
    text = report.markdown()
    write_section(results_path, f"{city_key}-run", text)
    return text


def run(
    city_key: str,
    variants: tuple[str, ...] = ("calliper",),
    preset: str = "default",
    overrides: Mapping[str, Any] | None = None,
    tiny: bool = False,
    results_path: Path | None = None,
    dagster_home: Path | None = None,
    command: str = "calliper run",
    log_level: str = "INFO",
    s: settings.Settings | None = None,
    launched_by: str = CLI,
) -> int:
    """Materialise ``city_refresh`` for ``city_key`` once per description variant; write the
    results section to ``results_path`` when given. ``s``: the paths and city files (default:
    from the environment); ``launched_by``: the door, tagged on each run. Returns a process
    exit status."""
    s = s or settings.from_env()
    home = dagster_home or s.dagster_home
    runs: dict[str, dg.ExecuteInProcessResult] = {}
    for variant in variants:
        if tiny:
            config = tiny_run_config(log_level, variant, preset, overrides)
        else:
            training = TrainingConfig(
                preset=preset,
                description_variant=variant,  # type: ignore[arg-type]
                **dict(overrides or {}),
            )
            config = build_run_config(training, log_level=log_level)
        result = materialize_city(city_key, home, config, s=s, launched_by=launched_by)
        for line in summarise(result):
            logger.info(line)
        status = "succeeded" if result.success else "FAILED"
        logger.info(f"run {result.run_id} [{variant}]: {status}")
        if not result.success:
            for line in failures(result):
                print(f"calliper run: error: {line}", file=sys.stderr)
            return 1
        runs[variant] = result
    if results_path is not None:
        baselines = config["ops"].get("baselines", {}).get("config")
        evaluation = EvaluationConfig(**baselines) if baselines else None
        print(write_report(city_key, runs, preset, home, results_path, command, s, evaluation))
        logger.info(f"results written to {results_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m jobs.run_city [options]`` = ``calliper run [options]``."""
    from jobs.cli.parser import main as cli_main

    args = sys.argv[1:] if argv is None else argv
    return cli_main(["run", "--launched-by", RUN_CITY_MODULE, *args])


if __name__ == "__main__":
    sys.exit(main())
