"""The one ``Definitions`` object: assets, checks, jobs, per-city schedules, automation.

When things run:

- each city's snapshot is observed on the city's ``refresh_cron`` (schedule
  ``<city>_snapshot_observation``, on by default); the observation's data version is the file's
  content hash;
- every downstream asset carries ``AutomationCondition.eager()``, evaluated by the automation
  sensor ``calliper_automation`` (on by default): a new hash re-runs that city's chain; an
  unchanged one requests nothing;
- on demand: job ``city_refresh`` (observe + the whole chain of a partition) and ``retrain``
  (``calliper_model`` and everything downstream of it).

Every run carries the tag ``calliper/launched_by`` (see :mod:`jobs.origin`). The steps run on
Dagster's default executor, or on a Dask cluster when ``CALLIPER_DASK_SCHEDULER`` names one
(see :mod:`jobs.executors` and ``docs/scale.md``).

``workspace.yaml`` loads this module; ``defs`` is built from the environment (see
:mod:`calliper_pipeline.settings` and :func:`assets.resources.default_resources`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from assets import build_city_assets
from assets.resources import default_resources
from assets.training import CALLIPER_MODEL
from calliper_pipeline import settings
from calliper_pipeline.cities.spec import CitySpec, load_city_registry
from jobs.executors import executor_from_env
from jobs.origin import LAUNCHED_BY, SCHEDULE, SENSOR, WEBSERVER

OBSERVE_JOB = "poi_snapshot_observation"
CITY_REFRESH_JOB = "city_refresh"
RETRAIN_JOB = "retrain"
AUTOMATION_SENSOR = "calliper_automation"
# runs of these jobs launched from the UI or over GraphQL; every other door overrides the tag
# (job tags, not run_tags: a GraphQL launch merges only the job's tags into the run's)
WEBSERVER_RUN_TAGS = {LAUNCHED_BY: WEBSERVER}


def _snapshot_schedule(city_key: str, cron: str, job: Any) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=f"{city_key}_snapshot_observation",
        cron_schedule=cron,
        job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Observe the POI snapshot of `{city_key}` (its hash) on the city's cron.",
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        return dg.RunRequest(partition_key=city_key, tags={LAUNCHED_BY: SCHEDULE})

    return _schedule


def build_definitions(
    s: settings.Settings | None = None,
    specs: Mapping[str, CitySpec] | None = None,
    resources: Mapping[str, Any] | None = None,
    executor: Any | None = None,
) -> dg.Definitions:
    """Definitions for a city registry (default: built-in cities plus ``s.city_files``).
    ``executor``: the jobs' executor (default: :func:`jobs.executors.executor_from_env`, which
    is Dagster's own unless ``CALLIPER_DASK_SCHEDULER`` is set)."""
    s = s or settings.from_env()
    specs = specs if specs is not None else load_city_registry(s.city_files)
    graph = build_city_assets(specs)
    parts = graph.cities.partitions
    snapshot_key = graph.snapshot.key
    observe = dg.define_asset_job(
        OBSERVE_JOB,
        selection=dg.AssetSelection.assets(snapshot_key),
        partitions_def=parts,
        description="Hash a city's POI snapshot file (an observation; changes trigger the chain).",
        tags=WEBSERVER_RUN_TAGS,
    )
    city_refresh = dg.define_asset_job(
        CITY_REFRESH_JOB,
        selection=dg.AssetSelection.assets(snapshot_key, *(a.key for a in graph.assets)),
        partitions_def=parts,
        description="Observe, ingest, embed, train, evaluate, promote and map one city.",
        tags=WEBSERVER_RUN_TAGS,
    )
    retrain = dg.define_asset_job(
        RETRAIN_JOB,
        selection=dg.AssetSelection.assets(CALLIPER_MODEL).downstream(),
        partitions_def=parts,
        description="Train a city again (new config or code) and everything downstream.",
        tags=WEBSERVER_RUN_TAGS,
    )
    schedules = [
        _snapshot_schedule(key, spec.refresh_cron, observe) for key, spec in sorted(specs.items())
    ]
    automation = dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR,
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Evaluates the assets' automation conditions (eager: new upstream data).",
        run_tags={LAUNCHED_BY: SENSOR},
    )
    return dg.Definitions(
        assets=[graph.snapshot, *graph.assets],
        asset_checks=graph.checks,
        jobs=[observe, city_refresh, retrain],
        schedules=schedules,
        sensors=[automation],
        resources=dict(resources) if resources is not None else default_resources(s),
        executor=executor if executor is not None else executor_from_env(),
    )


defs = build_definitions()
