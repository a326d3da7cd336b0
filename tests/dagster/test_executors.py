"""The executor of the asset jobs: Dagster's own by default, a Dask cluster only when asked."""

from __future__ import annotations

import pytest

from calliper_pipeline.errors import ConfigError
from jobs.definitions import CITY_REFRESH_JOB, OBSERVE_JOB, RETRAIN_JOB, build_definitions
from jobs.executors import DASK_SCHEDULER_ENV, executor_from_env


def test_without_a_scheduler_the_jobs_keep_dagsters_executor() -> None:
    assert executor_from_env({}) is None
    assert executor_from_env({DASK_SCHEDULER_ENV: "  "}) is None
    defs = build_definitions(executor=None)
    for name in (OBSERVE_JOB, CITY_REFRESH_JOB, RETRAIN_JOB):
        assert defs.resolve_job_def(name).executor_def.name == "multi_or_in_process_executor"


def test_a_scheduler_address_without_a_scheme_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"CALLIPER_DASK_SCHEDULER='dask-host:8786'.*tcp://"):
        executor_from_env({DASK_SCHEDULER_ENV: "dask-host:8786"})
