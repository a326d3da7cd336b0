"""The DuckDB table of downstream evaluation metrics (:data:`constants.EVALUATION_TABLE`).

One row per (city, model, model version, task, probe, metric): the summary of
:meth:`evaluate.EvaluationResult.to_frame` (``mean``/``std`` are fractions, over ``n_seeds``
seeds) with where it came from (``mlflow_run_id``; ``model_version`` is the registered
version, or any label a caller chooses for a baseline). Writing a (city, model, version, task)
again replaces its rows in one transaction.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import duckdb
import pandas as pd

from calliper_pipeline.constants import EVALUATION_TABLE
from calliper_pipeline.store.pois import table_exists

RESULT_COLUMNS: tuple[str, ...] = (
    "city",
    "model_name",
    "model_version",
    "mlflow_run_id",
    "encoder",
    "task",
    "probe",
    "metric",
    "mean",
    "std",
    "n_seeds",
    "evaluated_at",
)

_DDL = f"""
CREATE TABLE IF NOT EXISTS {EVALUATION_TABLE} (
    city VARCHAR NOT NULL,
    model_name VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL,
    mlflow_run_id VARCHAR,
    encoder VARCHAR NOT NULL,
    task VARCHAR NOT NULL,
    probe VARCHAR NOT NULL,
    metric VARCHAR NOT NULL,
    mean DOUBLE NOT NULL,
    std DOUBLE,
    n_seeds INTEGER NOT NULL,
    evaluated_at TIMESTAMP NOT NULL
)"""


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the evaluation table if absent (idempotent)."""
    con.execute(_DDL)


def write_evaluation(
    con: duckdb.DuckDBPyConnection,
    city_key: str,
    model_name: str,
    model_version: str,
    mlflow_run_id: str | None,
    frame: pd.DataFrame,
) -> int:
    """Replace the rows of (city, model, version, every task in ``frame``); returns rows written.

    Args:
        frame: :meth:`EvaluationResult.to_frame` (columns encoder, task, probe, metric, mean,
            std, n_seeds).
    """
    ensure_schema(con)
    rows = frame.assign(
        city=city_key,
        model_name=model_name,
        model_version=str(model_version),
        mlflow_run_id=mlflow_run_id,
        evaluated_at=datetime.now(UTC).replace(tzinfo=None),
    )[list(RESULT_COLUMNS)]
    tasks = sorted(rows["task"].astype(str).unique())
    view = f"_eval_{uuid.uuid4().hex}"
    cols = ", ".join(f'"{c}"' for c in RESULT_COLUMNS)
    con.begin()
    try:
        for task in tasks:
            con.execute(
                f"DELETE FROM {EVALUATION_TABLE} "
                "WHERE city = ? AND model_name = ? AND model_version = ? AND task = ?",
                [city_key, model_name, str(model_version), task],
            )
        con.register(view, rows)
        try:
            con.execute(f"INSERT INTO {EVALUATION_TABLE} ({cols}) SELECT {cols} FROM {view}")
        finally:
            con.unregister(view)
    except BaseException:
        con.rollback()
        raise
    con.commit()
    return len(rows)


def read_evaluation(
    con: duckdb.DuckDBPyConnection,
    city_key: str | None = None,
    model_name: str | None = None,
    model_version: str | None = None,
) -> pd.DataFrame:
    """Rows of the evaluation table (all, or those matching the given keys)."""
    if not table_exists(con, EVALUATION_TABLE):
        return pd.DataFrame(columns=list(RESULT_COLUMNS))
    where, params = [], []
    for col, value in (
        ("city", city_key),
        ("model_name", model_name),
        ("model_version", model_version),
    ):
        if value is not None:
            where.append(f"{col} = ?")
            params.append(str(value))
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    return con.execute(
        f"SELECT * FROM {EVALUATION_TABLE} {clause} "
        "ORDER BY city, model_name, model_version, task, probe, metric",
        params,
    ).df()


def score(
    con: duckdb.DuckDBPyConnection,
    city_key: str,
    model_name: str,
    model_version: str,
    metric_key: str,
) -> float | None:
    """The mean of ``metric_key`` = ``"<task>.<probe>.<metric>"`` (e.g. ``luc.mlp.f1``), or None."""
    task, probe, metric = split_metric_key(metric_key)
    df = read_evaluation(con, city_key, model_name, model_version)
    hit = df[(df["task"] == task) & (df["probe"] == probe) & (df["metric"] == metric)]
    return None if hit.empty else float(hit["mean"].iloc[0])


def split_metric_key(metric_key: str) -> tuple[str, str, str]:
    """``"luc.mlp.f1"`` -> ("luc", "mlp", "f1"); raises ValueError on another shape."""
    parts = metric_key.split(".")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"metric key must be '<task>.<probe>.<metric>', got {metric_key!r}")
    return parts[0], parts[1], parts[2]


def metric_key(task: str, probe: str, metric: str) -> str:
    """The flat name used in MLflow and Dagster metadata: ``<task>.<probe>.<metric>``."""
    return f"{task}.{probe}.{metric}"
