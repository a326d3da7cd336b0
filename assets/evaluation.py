"""Evaluation: the paper's probes on the exact trained version, and the champion gate."""

from dataclasses import replace
from typing import Any

import dagster as dg
import pandas as pd

from assets.config import EvaluationConfig
from assets.errors import one_line_failure
from assets.ingestion import POIS
from assets.metadata import (
    PREVIEW,
    cache_metadata,
    fmt,
    markdown_table,
    numbers,
    png_markdown,
    preview,
)
from assets.partitions import Cities
from assets.resources import DUCKDB_POOL, DataLocationResource, DuckDBResource, MlflowResource
from assets.training import CALLIPER_MODEL, trained_version
from calliper_pipeline.store.metrics import higher_is_better

GROUP = "evaluation"
LAND_USE = dg.AssetKey("land_use_evaluation")
SOCIOECONOMIC = dg.AssetKey("socioeconomic_evaluation")
BASELINES = dg.AssetKey("baselines")
TASK_LABELS = {"luc": "land-use classification", "sdm": "socio-economic distribution"}


def build_evaluation(cities: Cities, key: dg.AssetKey, task: str) -> dg.AssetsDefinition:
    """An evaluation asset for ``task`` ("luc" or "sdm"); cities without the set skip it."""
    label = TASK_LABELS[task]

    @dg.asset(
        name=key.path[-1],
        partitions_def=cities.partitions,
        deps=[CALLIPER_MODEL, BASELINES],
        group_name=GROUP,
        pool=DUCKDB_POOL,
        automation_condition=dg.AutomationCondition.eager(),
        kinds={"pytorch", "duckdb"},
        code_version="1",
        description=(
            f"The paper's {label} probes (linear and MLP, over seeds) on the exact version "
            "`calliper_model` registered; metrics in DuckDB and on the training's MLflow run."
        ),
    )
    @one_line_failure
    def _evaluation(
        context: dg.AssetExecutionContext,
        config: EvaluationConfig,
        duckdb: DuckDBResource,
        data: DataLocationResource,
        mlflow: MlflowResource,
    ) -> dg.MaterializeResult:
        from calliper_pipeline.steps import assess as assessment
        from calliper_pipeline.steps import baselines as steps_baselines
        from calliper_pipeline.store import metrics as results
        from calliper_pipeline.tracking.runs import artifact_url

        city = cities.spec(context.partition_key)
        if not assessment.has_evaluation_set(city, task):
            reason = f"{city.name} has no {label} set configured ([evaluation] of its city file)"
            context.log.info(f"skipped: {reason}")
            return dg.MaterializeResult(metadata=_skipped(reason))
        version = trained_version(context, city.key)
        cached = assessment.cached_evaluation(
            city, data.data_root_path, task, version, mlflow.tracking(),
            config.probe_config(), data.output_dir(city.key, "cache"),
        )  # fmt: skip
        assert cached is not None  # has_evaluation_set was checked above
        out = cached.outcome
        if cached.hit:
            context.log.info(f"{version.model_uri}: {task} cache hit {cached.key} (probes skipped)")
        with duckdb.connect(context.partition_key) as con:
            n_rows = results.write_evaluation(
                con, city.key, version.name, version.version, version.run_id, out.frame
            )
            base = steps_baselines.cached_baselines(
                con, city, data.data_root_path, _baseline_config(config), log=context.log.info
            )
        context.log.info(f"{version.model_uri}: {task} {out.metrics}")
        image_url = None
        if version.run_id:
            path = f"evaluation/{out.table_png.name}"
            image_url = artifact_url(mlflow.tracking(), version.run_id, path)
        metadata = _evaluation_metadata(out, version, n_rows, base.frame, task, image_url)
        return dg.MaterializeResult(metadata=metadata | cache_metadata(cached))

    return _evaluation


def _baseline_config(config: EvaluationConfig) -> Any:
    """The RunConfig whose encoder and probe settings key the cached baselines."""
    from calliper_pipeline import presets

    return replace(presets.run_config(), probe=config.probe_config())


def _skipped(reason: str) -> dict[str, Any]:
    return {PREVIEW: preview([f"skipped: {reason}"]), "skipped": True, "reason": reason}


HEADLINE_METRIC = {"luc": "f1", "sdm": "l1"}  # what the preview leads with, per task
PROTOCOL_LABELS = {"random": "random split", "blocks": "spatial blocks"}


def _evaluation_preview(
    beside: pd.DataFrame, version: Any, task: str, out: Any, image_url: str | None
) -> dg.MetadataValue:
    """Our MLP probe's headline metric under each protocol, beside the best baseline's."""
    metric = HEADLINE_METRIC[task]
    higher = higher_is_better(f"{task}.mlp.{metric}")
    rows = beside[beside["metric"] == metric]
    lines = [f"**{TASK_LABELS[task]}**, MLP probe, {metric} (x100, mean ± std over seeds)"]
    for protocol, label in PROTOCOL_LABELS.items():
        here = rows[rows["protocol"] == protocol]
        ours = here[here["encoder"] == "ours"]
        if ours.empty:
            continue
        line = (
            f"{label}: ours **{fmt(ours['mean_x100'].iloc[0])}** ± {fmt(ours['std_x100'].iloc[0])}"
        )
        others = here[here["encoder"] != "ours"]
        if not others.empty:
            best = others.sort_values("mean_x100", ascending=not higher).iloc[0]
            line += f" · best baseline ({_short(str(best['encoder']))}) {fmt(best['mean_x100'])}"
        lines.append(line)
    lines.append(
        f"`{version.model_uri}` · {out.n_points:,} points, {out.split_sizes[2]:,} test · "
        f"{fmt(out.seconds)} s"
    )
    return preview(lines, (f"{task} results", image_url))


def _evaluation_metadata(
    out: Any,
    version: Any,
    n_rows: int,
    baselines: Any,
    task: str,
    image_url: str | None = None,
) -> dict[str, Any]:
    """The preview, our probes' table, the same table for every baseline beside it, and the
    numbers."""
    cols = ["protocol", "probe", "metric", "mean_x100", "std_x100", "n_seeds"]
    ours = out.frame.assign(encoder="ours")
    others = baselines[(baselines["task"] == task) & (baselines["probe"] == "mlp")]
    # rows read back from the cache hold mean and std only: the x100 columns come from them
    others = others.assign(mean_x100=others["mean"] * 100.0, std_x100=others["std"] * 100.0)
    beside = pd.concat([ours[ours["probe"] == "mlp"], others], ignore_index=True)
    beside = beside[["encoder", "protocol", "metric", "mean_x100", "std_x100"]].round(2)
    return {
        PREVIEW: _evaluation_preview(beside, version, task, out, image_url),
        "results_table": png_markdown(out.table_png, f"{task} results"),
        "skipped": False,
        "model_uri": version.model_uri,
        "mlflow_run_id": version.run_id or "",
        "results": dg.MetadataValue.md(markdown_table(out.frame[cols], max_rows=40)),
        "mlp_vs_baselines": dg.MetadataValue.md(markdown_table(beside, max_rows=60)),
        **numbers(
            {
                **{k.replace(".", "_"): v for k, v in out.metrics.items()},
                "n_points": out.n_points,
                "n_test": out.split_sizes[2],
                "rows_written": n_rows,
                "seconds": out.seconds,
            }
        ),
    }


def build_baselines(cities: Cities) -> dg.AssetsDefinition:
    """``baselines``: the four training-free baselines under both protocols, cached on inputs."""

    @dg.asset(
        name=BASELINES.path[-1],
        partitions_def=cities.partitions,
        deps=[POIS],
        group_name=GROUP,
        pool=DUCKDB_POOL,
        automation_condition=dg.AutomationCondition.eager(),
        kinds={"pytorch", "duckdb"},
        code_version="1",
        description=(
            "Raw coordinates, the bare positional encoding, an untrained encoder and POI "
            "category counts (200-2000 m) through the same probes, random split and spatial "
            "blocks; cached on the snapshot, evaluation files and settings (DuckDB)."
        ),
    )
    @one_line_failure
    def baselines(
        context: dg.AssetExecutionContext,
        config: EvaluationConfig,
        duckdb: DuckDBResource,
        data: DataLocationResource,
    ) -> dg.MaterializeResult:
        from calliper_pipeline.steps import baselines as steps_baselines
        from calliper_pipeline.steps.assess import has_evaluation_set

        city = cities.spec(context.partition_key)
        if not (has_evaluation_set(city, "luc") or has_evaluation_set(city, "sdm")):
            reason = f"{city.name} has no evaluation set: no baseline to compute"
            context.log.info(f"skipped: {reason}")
            return dg.MaterializeResult(metadata=_skipped(reason))
        with duckdb.connect(context.partition_key) as con:
            out = steps_baselines.cached_baselines(
                con, city, data.data_root_path, _baseline_config(config), log=context.log.info
            )
        frame = out.frame
        shown = frame[["encoder", "protocol", "task", "probe", "metric", "mean", "std"]].copy()
        shown[["mean", "std"]] = (shown[["mean", "std"]] * 100.0).round(2)
        mlp = frame[(frame["probe"] == "mlp") & frame["metric"].isin(["f1", "l1"])]
        keys = [
            f"{p}_{t}_mlp_{m}_{_short(str(e))}"
            for p, t, m, e in zip(
                mlp["protocol"], mlp["task"], mlp["metric"], mlp["encoder"], strict=False
            )
        ]
        headline = dict(zip(keys, mlp["mean"].astype(float).tolist(), strict=True))
        hit = "reused from the cache" if out.cache_hit else "computed now"
        lines = [f"**{frame['encoder'].nunique()} baselines** x 2 protocols, {hit}"]
        for task, metric in HEADLINE_METRIC.items():
            key = f"random_{task}_mlp_{metric}_counts"
            if key in headline:
                lines.append(f"POI counts, {task} MLP {metric} (x100, random split): "
                             f"**{fmt(100.0 * headline[key])}**")  # fmt: skip
        return dg.MaterializeResult(
            metadata={
                PREVIEW: preview(lines),
                "skipped": False,
                "cache_key": out.cache_key,
                "cache_hit": out.cache_hit,
                "results": dg.MetadataValue.md(markdown_table(shown, max_rows=80)),
                **numbers(headline),
            }
        )

    return baselines


def _short(label: str) -> str:
    """A metadata-key-safe short name of a baseline label."""
    for word, short in (("count", "counts"), ("positional", "pe"), ("untrained", "untrained"),
                        ("raw", "raw")):  # fmt: skip
        if word in label:
            return short
    return "other"
