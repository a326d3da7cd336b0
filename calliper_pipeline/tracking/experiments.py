"""MLflow records of an experiment grid: one parent run per (experiment, city), one child run
per stored cell (configuration x training seed), each logged once (resumable)."""

from __future__ import annotations

import json

import pandas as pd
from mlflow import MlflowClient

from calliper_pipeline.tracking.runs import TrackingConfig

EXPERIMENT_NAME = "calliper-experiments"


def _parent(client: MlflowClient, experiment_id: str, name: str, city: str) -> str:
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.grid = '{name}' AND tags.city = '{city}' AND tags.role = 'parent'",
        max_results=1,
    )
    if found:
        return str(found[0].info.run_id)
    run = client.create_run(
        experiment_id, tags={"grid": name, "city": city, "role": "parent"}, run_name=name
    )
    client.set_terminated(run.info.run_id)
    return str(run.info.run_id)


def log_grid(tracking: TrackingConfig, name: str, city: str, rows: pd.DataFrame) -> int:
    """Log every stored cell of ``rows`` (:func:`store.experiments.read`) not yet logged as a
    child run of the grid's parent run; returns the number of child runs created."""
    client = tracking.client()
    exp = client.get_experiment_by_name(EXPERIMENT_NAME)
    experiment_id = exp.experiment_id if exp else client.create_experiment(EXPERIMENT_NAME)
    parent = _parent(client, experiment_id, name, city)
    logged = {
        (r.data.tags.get("config"), r.data.tags.get("train_seed"))
        for r in client.search_runs(
            [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'"
        )
    }
    created = 0
    for (config, seed), part in rows.groupby(["config", "train_seed"], sort=False):
        if (str(config), str(seed)) in logged:
            continue
        tags = {"mlflow.parentRunId": parent, "config": str(config), "train_seed": str(seed),
                "grid": name, "city": city, "role": "cell"}  # fmt: skip
        run = client.create_run(experiment_id, tags=tags, run_name=f"{config} seed {seed}")
        rid = run.info.run_id
        info = json.loads(str(part["info_json"].iloc[0]) or "{}")
        for key, value in (info.get("config") or {}).items():
            client.log_param(rid, key, str(value)[:500])
        cols = (part["protocol"], part["task"], part["probe"], part["metric"])
        names = [".".join(map(str, k)) for k in zip(*cols, strict=True)]
        for metric, value in zip(names, part["mean"].astype(float).tolist(), strict=True):
            client.log_metric(rid, metric, value)
        client.log_metric(rid, "seconds", float(part["seconds"].iloc[0]))
        client.log_metric(rid, "dim", float(part["dim"].iloc[0]))
        client.set_terminated(rid)
        created += 1
    return created
