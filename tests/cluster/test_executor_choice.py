"""With the ``cluster`` extra installed, ``CALLIPER_DASK_SCHEDULER`` gives every asset job the
Dask step executor, configured with that address."""

from __future__ import annotations

import pytest

from jobs.definitions import CITY_REFRESH_JOB, OBSERVE_JOB, RETRAIN_JOB, build_definitions
from jobs.executors import DASK_SCHEDULER_ENV, executor_from_env

pytestmark = pytest.mark.cluster


def test_a_scheduler_address_selects_the_dask_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    address = "tcp://10.0.0.7:8786"
    executor = executor_from_env({DASK_SCHEDULER_ENV: address})
    assert executor is not None and executor.name == "dask"
    monkeypatch.setenv(DASK_SCHEDULER_ENV, address)
    defs = build_definitions()
    for name in (OBSERVE_JOB, CITY_REFRESH_JOB, RETRAIN_JOB):
        job = defs.resolve_job_def(name)
        assert job.executor_def.name == "dask"
        mapped = job.executor_def.apply_config_mapping({})
        assert mapped.success and mapped.value == {"config": {"address": address}}
