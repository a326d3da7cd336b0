"""Which executor runs the steps of the asset jobs: one machine (the default) or a Dask cluster.

- ``CALLIPER_DASK_SCHEDULER`` unset or empty (the default): Dagster's own executor, the steps
  of a run in subprocesses of its run worker (``multiprocess``), or in the run worker itself
  with run config ``execution: {config: {in_process: {}}}``. ``calliper run`` executes in its
  own process either way.
- ``CALLIPER_DASK_SCHEDULER=tcp://host:8786``: every step is a task on that Dask scheduler's
  workers (``dagster-dask``'s step runner, see :mod:`jobs.dask_steps`). The workers import this
  code location and need the same environment as the code server: ``CALLIPER_HOME``,
  ``CALLIPER_DATA_ROOT``, ``MLFLOW_TRACKING_URI`` (see ``deploy/`` and ``docs/scale.md``).

``dagster-dask`` comes with the ``cluster`` extra (``pip install -e '.[cluster]'``); it is
imported only when the variable is set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from calliper_pipeline.errors import ConfigError

DASK_SCHEDULER_ENV = "CALLIPER_DASK_SCHEDULER"


def executor_from_env(env: Mapping[str, str] | None = None) -> Any | None:
    """The executor definition the environment asks for, or ``None`` for Dagster's default."""
    env = os.environ if env is None else env
    address = env.get(DASK_SCHEDULER_ENV, "").strip()
    if not address:
        return None
    if "://" not in address:
        raise ConfigError(
            f"{DASK_SCHEDULER_ENV}={address!r}: expected a Dask scheduler address such as "
            "tcp://127.0.0.1:8786"
        )
    try:
        from jobs.dask_steps import dask_step_executor
    except ImportError as exc:
        raise ConfigError(
            f"{DASK_SCHEDULER_ENV} is set but dagster-dask is not installed: "
            "pip install -e '.[cluster]'"
        ) from exc
    return dask_step_executor.configured({"address": address})
