"""The DuckDB table of downstream evaluation metrics (:data:`constants.EVALUATION_TABLE`).

One row per (city, model, model version, protocol, task, probe, metric): the summary of
:meth:`~calliper_pipeline.evaluation.protocol.EvaluationResult.to_frame` (``mean``/``std`` are
fractions, over ``n_seeds`` seeds) with where it came from (``mlflow_run_id``;
``model_version`` is the registered version, or any label a caller chooses for a baseline).
``protocol`` is the split protocol: ``"random"`` (the paper's split) or ``"blocks"`` (spatial
blocks). Writing a (city, model, version, protocol, task) again replaces its rows in one
transaction.

Migration: :func:`ensure_schema` creates the table if missing and adds the ``protocol`` column
(default ``'random'``) to a store written before it; readers of a store not yet migrated (e.g.
a read-only connection) see ``protocol = 'random'`` on every row.

Flat metric keys (MLflow metrics, Dagster metadata, the promotion gate): ``<task>.<probe>.<metric>``
for the random protocol (``luc.mlp.f1``, as before) and ``<protocol>.<task>.<probe>.<metric>``
for the others (``blocks.luc.mlp.f1``); see :func:`metric_key` and :func:`parse_metric_key`.
"""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pandas as pd

from calliper_pipeline.constants import EVALUATION_TABLE
from calliper_pipeline.store.db import registered, table_exists, transaction

RANDOM_PROTOCOL = "random"  # the paper's split; keys without a protocol prefix
KNOWN_PROTOCOLS = ("random", "blocks")  # as evaluation.splits.PROTOCOLS

RESULT_COLUMNS: tuple[str, ...] = (
    "city",
    "model_name",
    "model_version",
    "mlflow_run_id",
    "encoder",
    "protocol",
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
    protocol VARCHAR NOT NULL DEFAULT '{RANDOM_PROTOCOL}',
    task VARCHAR NOT NULL,
    probe VARCHAR NOT NULL,
    metric VARCHAR NOT NULL,
    mean DOUBLE NOT NULL,
    std DOUBLE,
    n_seeds INTEGER NOT NULL,
    evaluated_at TIMESTAMP NOT NULL
)"""

# stores written before the protocols: existing rows are the random protocol's
_MIGRATE = (
    f"ALTER TABLE {EVALUATION_TABLE} "
    f"ADD COLUMN IF NOT EXISTS protocol VARCHAR DEFAULT '{RANDOM_PROTOCOL}'"
)


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the evaluation table if absent, add ``protocol`` if missing (idempotent)."""
    con.execute(_DDL)
    con.execute(_MIGRATE)


def _has_protocol_column(con: duckdb.DuckDBPyConnection) -> bool:
    rows = con.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = ? "
        "AND column_name = 'protocol' AND table_schema = current_schema() "
        "AND table_catalog = current_database()",
        [EVALUATION_TABLE],
    ).fetchall()
    return bool(rows[0][0])


def write_evaluation(
    con: duckdb.DuckDBPyConnection,
    city_key: str,
    model_name: str,
    model_version: str,
    mlflow_run_id: str | None,
    frame: pd.DataFrame,
) -> int:
    """Replace the rows of (city, model, version, every (protocol, task) in ``frame``);
    returns rows written. Migrates an old store first (:func:`ensure_schema`).

    Args:
        frame: :meth:`EvaluationResult.to_frame` (columns encoder, protocol, task, probe,
            metric, mean, std, n_seeds); a frame without ``protocol`` is the random protocol's.
    """
    ensure_schema(con)
    if "protocol" not in frame.columns:
        frame = frame.assign(protocol=RANDOM_PROTOCOL)
    rows = frame.assign(
        city=city_key,
        model_name=model_name,
        model_version=str(model_version),
        mlflow_run_id=mlflow_run_id,
        evaluated_at=datetime.now(UTC).replace(tzinfo=None),
    )[list(RESULT_COLUMNS)]
    pairs = sorted({(str(p), str(t)) for p, t in rows[["protocol", "task"]].itertuples(False)})
    cols = ", ".join(f'"{c}"' for c in RESULT_COLUMNS)
    with registered(con, rows) as view, transaction(con):
        for protocol, task in pairs:
            con.execute(
                f"DELETE FROM {EVALUATION_TABLE} WHERE city = ? AND model_name = ? "
                "AND model_version = ? AND protocol = ? AND task = ?",
                [city_key, model_name, str(model_version), protocol, task],
            )
        con.execute(f"INSERT INTO {EVALUATION_TABLE} ({cols}) SELECT {cols} FROM {view}")
    return len(rows)


def read_evaluation(
    con: duckdb.DuckDBPyConnection,
    city_key: str | None = None,
    model_name: str | None = None,
    model_version: str | None = None,
    protocol: str | None = None,
) -> pd.DataFrame:
    """Rows of the evaluation table (all, or those matching the given keys), in
    :data:`RESULT_COLUMNS` order; an unmigrated store reads as ``protocol = 'random'``."""
    if not table_exists(con, EVALUATION_TABLE):
        return pd.DataFrame(columns=list(RESULT_COLUMNS))
    protocol_expr = "protocol" if _has_protocol_column(con) else f"'{RANDOM_PROTOCOL}'"
    select = ", ".join(
        f"{protocol_expr} AS protocol" if c == "protocol" else f'"{c}"' for c in RESULT_COLUMNS
    )
    where, params = [], []
    for col, value in (
        ("city", city_key),
        ("model_name", model_name),
        ("model_version", model_version),
        (protocol_expr, protocol),
    ):
        if value is not None:
            where.append(f"{col} = ?")
            params.append(str(value))
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    return con.execute(
        f"SELECT {select} FROM {EVALUATION_TABLE} {clause} "
        "ORDER BY city, model_name, model_version, protocol, task, probe, metric",
        params,
    ).df()


def score(
    con: duckdb.DuckDBPyConnection,
    city_key: str,
    model_name: str,
    model_version: str,
    metric_key: str,
) -> float | None:
    """The mean of ``metric_key`` (e.g. ``luc.mlp.f1``, ``blocks.luc.mlp.f1``), or None."""
    protocol, task, probe, metric = parse_metric_key(metric_key)
    df = read_evaluation(con, city_key, model_name, model_version, protocol)
    hit = df[(df["task"] == task) & (df["probe"] == probe) & (df["metric"] == metric)]
    return None if hit.empty else float(hit["mean"].iloc[0])


def parse_metric_key(metric_key: str) -> tuple[str, str, str, str]:
    """``"luc.mlp.f1"`` -> ("random", "luc", "mlp", "f1");
    ``"blocks.luc.mlp.f1"`` -> ("blocks", "luc", "mlp", "f1").

    Raises:
        ValueError: another shape, or a prefix that is not a protocol other than random.
    """
    parts = metric_key.split(".")
    if not all(parts) or len(parts) not in (3, 4):
        raise ValueError(
            f"metric key must be '[<protocol>.]<task>.<probe>.<metric>', got {metric_key!r}"
        )
    if len(parts) == 3:
        return RANDOM_PROTOCOL, parts[0], parts[1], parts[2]
    if parts[0] not in KNOWN_PROTOCOLS or parts[0] == RANDOM_PROTOCOL:
        raise ValueError(f"unknown protocol prefix {parts[0]!r} in {metric_key!r}")
    return parts[0], parts[1], parts[2], parts[3]


def split_metric_key(metric_key: str) -> tuple[str, str, str]:
    """``"luc.mlp.f1"`` -> ("luc", "mlp", "f1"): random-protocol keys only (use
    :func:`parse_metric_key` for any protocol); raises ValueError on another shape."""
    parts = metric_key.split(".")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"metric key must be '<task>.<probe>.<metric>', got {metric_key!r}")
    return parts[0], parts[1], parts[2]


def metric_key(task: str, probe: str, metric: str, protocol: str = RANDOM_PROTOCOL) -> str:
    """The flat name used in MLflow and Dagster metadata: ``<task>.<probe>.<metric>`` for the
    random protocol, ``<protocol>.<task>.<probe>.<metric>`` for the others."""
    base = f"{task}.{probe}.{metric}"
    return base if protocol == RANDOM_PROTOCOL else f"{protocol}.{base}"


def higher_is_better(metric_key: str) -> bool:
    """Whether a larger value of ``metric_key`` is better: LUC metrics yes, SDM (L1,
    Chebyshev, KL: distances) no, whatever the protocol."""
    return parse_metric_key(metric_key)[1] != "sdm"


def flat_metrics(frame: pd.DataFrame) -> dict[str, float]:
    """``{metric_key: mean, metric_key + "_std": std}`` for every row of a tidy frame
    (fractions; rows without ``protocol`` count as random)."""
    if "protocol" not in frame.columns:
        frame = frame.assign(protocol=RANDOM_PROTOCOL)
    out: dict[str, float] = {}
    cols = ["protocol", "task", "probe", "metric", "mean", "std"]
    for protocol, task, probe, metric, mean, std in frame[cols].itertuples(index=False):
        key = metric_key(str(task), str(probe), str(metric), str(protocol))
        out[key] = float(mean)
        out[f"{key}_std"] = float(std)
    return out
