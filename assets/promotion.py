"""The promotion gate: ``calliper_champion`` moves alias ``champion`` to the version just
trained when its blocking checks passed and it is at least as good as the incumbent (on
evaluation labels, else on held-out POIs)."""

import warnings
from typing import Any

import dagster as dg

from assets.config import PromotionConfig
from assets.embeddings import BLOCKING_EMBEDDING_CHECKS, TEXT_EMBEDDINGS
from assets.errors import one_line_failure
from assets.evaluation import GROUP, LAND_USE, SOCIOECONOMIC
from assets.ingestion import BLOCKING_POI_CHECKS, POIS
from assets.metadata import PREVIEW, fmt, numbers, preview, rounded
from assets.partitions import Cities
from assets.resources import DUCKDB_POOL, DuckDBResource, MlflowResource
from assets.training import trained_version

CHAMPION = dg.AssetKey("calliper_champion")
BLOCKING_CHECK_KEYS = tuple(dg.AssetCheckKey(POIS, n) for n in BLOCKING_POI_CHECKS) + tuple(
    dg.AssetCheckKey(TEXT_EMBEDDINGS, n) for n in BLOCKING_EMBEDDING_CHECKS
)


def blocking_checks_passed(context: dg.AssetExecutionContext, city_key: str) -> dict[str, bool]:
    """Whether each blocking check's latest evaluation for the city passed (missing: False).

    Reads the instance's event log through public APIs: the newest check-evaluation events
    (the last 1,000 of every check), filtered to this city's partition.
    """
    latest: dict[dg.AssetCheckKey, bool] = {}
    with warnings.catch_warnings():
        # Public, deprecated for 2.0; dagster 1.13 has no fetch_* twin for check evaluations
        # filtered by partition (the private event-log storage API is what we avoid).
        warnings.simplefilter("ignore", DeprecationWarning)
        records = context.instance.get_event_records(
            dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION),
            limit=1000,
            ascending=False,
        )
    for record in records:
        event = record.event_log_entry.dagster_event
        evaluation = event.event_specific_data if event is not None else None
        if not isinstance(evaluation, dg.AssetCheckEvaluation):
            continue
        if evaluation.partition not in (None, city_key):
            continue
        key = dg.AssetCheckKey(evaluation.asset_key, evaluation.check_name)
        latest.setdefault(key, bool(evaluation.passed))
    return {key.name: latest.get(key, False) for key in BLOCKING_CHECK_KEYS}


def _champion_metadata(
    tracking: Any, version: Any, base: dict[str, Any], decision: str, reason: str
) -> dict[str, Any]:
    """The gate's decision first, then the aliases it left on the candidate and the champion."""
    from calliper_pipeline.tracking.registry import CHAMPION_ALIAS, model_aliases

    held = model_aliases(tracking, version.name)
    aliases = tuple(a for a, n in held.items() if n == version.version)
    champion = held.get(CHAMPION_ALIAS, "none")
    lines = [
        f"**{decision}**: `{version.name}` v{version.version} holds "
        f"{', '.join(aliases) or 'no alias'}; `{CHAMPION_ALIAS}` is "
        + (f"v{champion}" if champion != "none" else "unset"),
        reason,
    ]
    if "candidate_score" in base:
        incumbent = base.get("incumbent_score")
        lines.append(
            f"{base['metric']}: candidate {fmt(base['candidate_score'])} · incumbent "
            f"{fmt(incumbent) if incumbent is not None else 'none'}"
        )
    return {
        PREVIEW: preview(lines),
        "decision": decision,
        "reason": reason,
        "aliases": ", ".join(aliases),
        "champion_version": champion,
        **base,
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
            "The promotion gate: alias `champion` of `calliper_<city>` moves to the version just "
            "trained only if all blocking checks passed and it is at least as good as the "
            "incumbent: on evaluation labels where the city has them (default LUC MLP macro "
            "F1, minus the tolerance), else on its held-out POIs (validation loss and "
            "text-to-location recall@1%, within their tolerances)."
        ),
    )
    @one_line_failure
    def calliper_champion(
        context: dg.AssetExecutionContext,
        config: PromotionConfig,
        duckdb: DuckDBResource,
        mlflow: MlflowResource,
    ) -> dg.MaterializeResult:
        from calliper_pipeline.steps.assess import has_evaluation_set
        from calliper_pipeline.store import metrics as results
        from calliper_pipeline.tracking import registry

        city_key = context.partition_key
        version = trained_version(context, city_key)
        task = results.parse_metric_key(config.metric)[1]
        if not has_evaluation_set(cities.spec(city_key), task):
            return _label_free_gate(context, config, mlflow, version)
        with duckdb.connect(context.partition_key, read_only=True) as con:
            score = results.score(con, city_key, version.name, version.version, config.metric)
        checks = blocking_checks_passed(context, city_key)
        base: dict[str, Any] = {
            "gate": registry.LABEL_GATE,
            "metric": config.metric,
            "candidate_version": version.version,
            "model_uri": version.model_uri,
            "checks_passed": all(checks.values()),
            "blocking_checks": dg.MetadataValue.json(checks),
        }
        tracking = mlflow.tracking()
        if score is None:
            reason = f"no {config.metric} for {version.model_uri}: champion left unchanged"
            context.log.warning(reason)
            return dg.MaterializeResult(
                metadata=_champion_metadata(tracking, version, base, "skipped", reason)
            )
        decision = registry.promote_if_better(
            tracking, city_key, version.version, score, config.metric,
            config.direction(), config.tolerance, all(checks.values()),
        )  # fmt: skip
        context.log.info(f"{version.model_uri}: {decision.reason}")
        incumbent = decision.incumbent_score
        scores = {
            "incumbent_version": decision.incumbent_version or "none",
            "candidate_score": rounded(decision.candidate_score),
            **({} if incumbent is None else {"incumbent_score": rounded(incumbent)}),
            "tolerance": rounded(config.tolerance),
        }
        verdict = "promoted" if decision.promoted else "rejected"
        return dg.MaterializeResult(
            metadata=_champion_metadata(
                tracking, version, {**base, **scores}, verdict, decision.reason
            )
        )

    return calliper_champion


def _label_free_gate(
    context: dg.AssetExecutionContext, config: PromotionConfig, mlflow: Any, version: Any
) -> dg.MaterializeResult:
    """The gate of a city without the metric's labels: held-out POIs
    (:func:`calliper_pipeline.tracking.label_free.promote_label_free`)."""
    from calliper_pipeline.tracking import label_free

    city_key = context.partition_key
    checks = blocking_checks_passed(context, city_key)
    decision = label_free.promote_label_free(
        mlflow.tracking(), city_key, version.version, all(checks.values()),
        config.heldout_loss_tolerance, config.heldout_recall_tolerance,
    )  # fmt: skip
    context.log.info(f"{version.model_uri} ({label_free.GATE}): {decision.reason}")
    tags = mlflow.tracking().client().get_model_version(version.name, version.version).tags
    measures = label_free.HeldOut.from_tags(dict(tags))
    numbers_ = {} if measures is None else {
        f"heldout_{k}": v
        for k, v in vars(measures).items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }  # fmt: skip
    return dg.MaterializeResult(
        metadata={
            "gate": label_free.GATE,
            "candidate_version": version.version,
            "model_uri": version.model_uri,
            "checks_passed": all(checks.values()),
            "blocking_checks": dg.MetadataValue.json(checks),
            "decision": "promoted" if decision.promoted else "rejected",
            "reason": decision.reason,
            "incumbent_version": decision.incumbent_version or "none",
            "heldout_loss_tolerance": config.heldout_loss_tolerance,
            "heldout_recall_tolerance": config.heldout_recall_tolerance,
            **numbers(numbers_),
        }
    )
