"""Evaluation: the paper's probes on the exact trained version, and the champion gate."""

from typing import Any

import dagster as dg
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from assets.config import EvaluationConfig, PromotionConfig
from assets.embeddings import BLOCKING_EMBEDDING_CHECKS, TEXT_EMBEDDINGS
from assets.ingestion import BLOCKING_POI_CHECKS, POIS
from assets.metadata import markdown_table, numbers, png_markdown
from assets.partitions import Cities
from assets.resources import DUCKDB_POOL, DataLocationResource, DuckDBResource, MlflowResource
from assets.training import CALLIPER_MODEL, trained_version

GROUP = "evaluation"
LAND_USE = dg.AssetKey("land_use_evaluation")
SOCIOECONOMIC = dg.AssetKey("socioeconomic_evaluation")
CHAMPION = dg.AssetKey("calliper_champion")
TASK_LABELS = {"luc": "land-use classification", "sdm": "socio-economic distribution"}
BLOCKING_CHECK_KEYS = tuple(dg.AssetCheckKey(POIS, n) for n in BLOCKING_POI_CHECKS) + tuple(
    dg.AssetCheckKey(TEXT_EMBEDDINGS, n) for n in BLOCKING_EMBEDDING_CHECKS
)


def build_evaluation(cities: Cities, key: dg.AssetKey, task: str) -> dg.AssetsDefinition:
    """An evaluation asset for ``task`` ("luc" or "sdm"); cities without the set skip it."""
    label = TASK_LABELS[task]

    @dg.asset(
        name=key.path[-1],
        partitions_def=cities.partitions,
        deps=[CALLIPER_MODEL],
        group_name=GROUP,
        pool=DUCKDB_POOL,
        automation_condition=dg.AutomationCondition.eager(),
        kinds={"pytorch", "duckdb"},
        code_version="1",
        description=(
            f"The paper's {label} probes (linear and MLP, over seeds) on the exact version "
            "calliper_model registered; metrics in DuckDB and on the training's MLflow run."
        ),
    )
    def _evaluation(
        context: dg.AssetExecutionContext,
        config: EvaluationConfig,
        duckdb: DuckDBResource,
        data: DataLocationResource,
        mlflow: MlflowResource,
    ) -> dg.MaterializeResult:
        from calliper_pipeline.steps import assess as assessment
        from calliper_pipeline.store import metrics as results

        city = cities.spec(context.partition_key)
        if not assessment.has_evaluation_set(city, task):
            reason = f"{city.name} has no {label} set configured ([evaluation] of its city file)"
            context.log.info(f"skipped: {reason}")
            return dg.MaterializeResult(metadata={"skipped": True, "reason": reason})
        version = trained_version(context, city.key)
        out_dir = data.output_dir(city.key, "runs", context.run_id)
        out = assessment.evaluate_registered(
            city, data.data_root_path, task, version, mlflow.tracking(),
            config.probe_config(), out_dir,
        )  # fmt: skip
        assert out is not None  # has_evaluation_set was checked above
        with duckdb.connect() as con:
            n_rows = results.write_evaluation(
                con, city.key, version.name, version.version, version.run_id, out.frame
            )
        context.log.info(f"{version.model_uri}: {task} {out.metrics}")
        shown = out.frame[["probe", "metric", "mean_x100", "std_x100", "n_seeds"]]
        return dg.MaterializeResult(
            metadata={
                "skipped": False,
                "model_uri": version.model_uri,
                "mlflow_run_id": version.run_id or "",
                "results": dg.MetadataValue.md(markdown_table(shown, max_rows=20)),
                "results_table": png_markdown(out.table_png, f"{task} results"),
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
        )

    return _evaluation


def blocking_checks_passed(context: dg.AssetExecutionContext, city_key: str) -> dict[str, bool]:
    """Whether each blocking check's latest execution for the city passed (missing: False)."""
    latest = context.instance.event_log_storage.get_latest_asset_check_execution_by_key(
        list(BLOCKING_CHECK_KEYS), partition_filter=PartitionKeyFilter(key=city_key)
    )
    return {
        key.name: (rec := latest.get(key)) is not None
        and rec.status == AssetCheckExecutionRecordStatus.SUCCEEDED
        for key in BLOCKING_CHECK_KEYS
    }


def build_champion(cities: Cities) -> dg.AssetsDefinition:
    """``calliper_champion``: moves ``champion`` to the candidate when it is at least as good."""

    @dg.asset(
        name=CHAMPION.path[-1],
        partitions_def=cities.partitions,
        deps=[LAND_USE, SOCIOECONOMIC],
        group_name=GROUP,
        pool=DUCKDB_POOL,
        automation_condition=dg.AutomationCondition.eager(),
        kinds={"mlflow"},
        code_version="1",
        description=(
            "The promotion gate: alias 'champion' of calliper_<city> moves to the version just "
            "trained only if all blocking checks passed and its score (default LUC MLP macro "
            "F1) is at least the incumbent's minus the tolerance."
        ),
    )
    def calliper_champion(
        context: dg.AssetExecutionContext,
        config: PromotionConfig,
        duckdb: DuckDBResource,
        mlflow: MlflowResource,
    ) -> dg.MaterializeResult:
        from calliper_pipeline.store import metrics as results
        from calliper_pipeline.tracking import registry

        city_key = context.partition_key
        version = trained_version(context, city_key)
        with duckdb.connect(read_only=True) as con:
            score = results.score(con, city_key, version.name, version.version, config.metric)
        checks = blocking_checks_passed(context, city_key)
        base: dict[str, Any] = {
            "metric": config.metric,
            "candidate_version": version.version,
            "model_uri": version.model_uri,
            "checks_passed": all(checks.values()),
            "blocking_checks": dg.MetadataValue.json(checks),
        }
        if score is None:
            reason = f"no {config.metric} for {version.model_uri}: champion left unchanged"
            context.log.warning(reason)
            return dg.MaterializeResult(metadata={**base, "decision": "skipped", "reason": reason})
        decision = registry.promote_if_better(
            mlflow.tracking(), city_key, version.version, score, config.metric,
            config.direction(), config.tolerance, all(checks.values()),
        )  # fmt: skip
        context.log.info(f"{version.model_uri}: {decision.reason}")
        incumbent = decision.incumbent_score
        return dg.MaterializeResult(
            metadata={
                **base,
                "decision": "promoted" if decision.promoted else "rejected",
                "reason": decision.reason,
                "incumbent_version": decision.incumbent_version or "none",
                "candidate_score": decision.candidate_score,
                **({} if incumbent is None else {"incumbent_score": incumbent}),
                "tolerance": config.tolerance,
            }
        )

    return calliper_champion
