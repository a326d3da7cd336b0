"""The asset jobs' steps as tasks on an existing Dask cluster (``dagster-dask``'s step runner).

Each step is one task running ``dagster_dask.executor.query_on_dask_worker`` in a worker
process, after the tasks of the steps it depends on. This executor differs from
``dagster_dask.dask_executor`` (0.29.27, with dask/distributed 2026.11) in two ways, both
needed here:

- the step's arguments travel inside one :class:`_StepArgs` object. ``dask_executor`` passes
  the ``DagsterRun`` itself to ``Client.submit``; dask walks every tuple among task arguments,
  ``DagsterRun`` is a named tuple and one of its fields is a Dagster ``@record`` that forbids
  iteration, so every run fails before its first step ("Iteration is not allowed on `@record`
  RunOpConcurrency");
- task keys carry the run id. ``dask_executor`` names a task ``<job>.<step>``, so two runs of
  one job at once (two cities' ``city_refresh``) share keys and the second run is handed the
  first one's results (dagster-io/dagster#21418).

Only an existing cluster (a scheduler address) is supported: the deployment starts its own
scheduler and workers (``deploy/serve.sh dask-scheduler`` / ``dask-worker``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import dask.distributed
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster._core.errors import raise_execution_interrupts
from dagster._core.events import DagsterEvent
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.plan.state import KnownExecutionState
from dagster._core.execution.retries import RetryMode
from dagster._core.instance.ref import InstanceRef
from dagster._utils import iterate_with_context
from dagster_dask.executor import get_dask_resource_requirements, query_on_dask_worker


@dataclass(frozen=True)
class _StepArgs:
    """What a worker needs to run one step; not a tuple, so dask passes it through whole."""

    recon_job: ReconstructableJob
    dagster_run: dg.DagsterRun
    run_config: Mapping[str, object] | None
    step_keys: Sequence[str]
    instance_ref: InstanceRef
    known_state: KnownExecutionState | None


def _run_step(dependencies: Sequence[Any], args: _StepArgs) -> Sequence[DagsterEvent]:
    """The Dask task: run ``args.step_keys`` (``dependencies`` only orders the tasks)."""
    return query_on_dask_worker(
        dependencies, args.recon_job, args.dagster_run, args.run_config, args.step_keys,
        args.instance_ref, args.known_state,
    )  # fmt: skip


class DaskStepExecutor(dg.Executor):
    """Submits every step of the plan to the scheduler at ``address``, one task per step."""

    def __init__(self, address: str):
        self.address = address

    @property
    def retries(self) -> RetryMode:
        return RetryMode.DISABLED

    def execute(
        self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan
    ) -> Iterator[DagsterEvent]:
        if not plan_context.instance.is_persistent:
            raise dg.DagsterInvariantViolationError(
                "the Dask executor needs a persistent Dagster instance (DAGSTER_HOME)"
            )
        run = plan_context.dagster_run
        futures: dict[str, Any] = {}
        with dask.distributed.Client(self.address) as client:
            for level in execution_plan.get_steps_to_execute_by_level():
                for step in level:
                    deps = [futures[k] for i in step.step_inputs for k in i.dependency_keys]
                    args = _StepArgs(
                        plan_context.reconstructable_job, run, plan_context.run_config,
                        [step.key], plan_context.instance.get_ref(), execution_plan.known_state,
                    )  # fmt: skip
                    futures[step.key] = client.submit(
                        _run_step, deps, args,
                        key=f"{plan_context.job_name}.{step.key}.{run.run_id}",
                        resources=get_dask_resource_requirements(step.tags),
                    )  # fmt: skip
            done = dask.distributed.as_completed(list(futures.values()), with_results=True)
            for _, events in iterate_with_context(raise_execution_interrupts, done):
                yield from events


@dg.executor(
    name="dask",
    config_schema={"address": dg.Field(dg.StringSource, description="tcp://host:8786")},
    requirements=dg.multiple_process_executor_requirements(),
)
def dask_step_executor(init_context: dg.InitExecutorContext) -> DaskStepExecutor:
    """Every step a task on the Dask scheduler at ``address`` (see the module's docstring)."""
    return DaskStepExecutor(str(init_context.executor_config["address"]))
