"""DuckDB table of experiment results: one row per (experiment, configuration, training seed,
protocol, task, probe, metric), so a grid can stop and resume without repeating a finished cell.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb
import pandas as pd

from calliper_pipeline.store.db import registered, table_exists, transaction

EXPERIMENT_TABLE = "experiment_results"

_DDL = f"""
CREATE TABLE IF NOT EXISTS {EXPERIMENT_TABLE} (
    experiment VARCHAR NOT NULL,
    city VARCHAR NOT NULL,
    config VARCHAR NOT NULL,
    train_seed INTEGER NOT NULL,
    protocol VARCHAR NOT NULL,
    task VARCHAR NOT NULL,
    probe VARCHAR NOT NULL,
    metric VARCHAR NOT NULL,
    mean DOUBLE NOT NULL,
    std DOUBLE NOT NULL,
    n_seeds INTEGER NOT NULL,
    dim INTEGER NOT NULL,
    seconds DOUBLE NOT NULL,
    info_json VARCHAR NOT NULL,
    recorded_at TIMESTAMP NOT NULL DEFAULT current_timestamp
)
"""

KEY = ("experiment", "city", "config", "train_seed")


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(_DDL)


def done(
    con: duckdb.DuckDBPyConnection, experiment: str, city: str, config: str, train_seed: int
) -> bool:
    """Whether this cell of the grid has stored results."""
    ensure_schema(con)
    row = con.execute(
        f"SELECT count(*) FROM {EXPERIMENT_TABLE} WHERE experiment = ? AND city = ? "
        "AND config = ? AND train_seed = ?",
        [experiment, city, config, train_seed],
    ).fetchone()
    return bool(row and row[0])


def write_cell(
    con: duckdb.DuckDBPyConnection,
    experiment: str,
    city: str,
    config: str,
    train_seed: int,
    frame: pd.DataFrame,
    dim: int,
    seconds: float,
    info: dict[str, Any],
) -> int:
    """Replace one cell's rows with ``frame`` (columns protocol, task, probe, metric, mean,
    std, n_seeds) in one transaction; returns the number of rows written."""
    ensure_schema(con)
    rows = frame.assign(
        experiment=experiment,
        city=city,
        config=config,
        train_seed=int(train_seed),
        dim=int(dim),
        seconds=float(seconds),
        info_json=json.dumps(info, sort_keys=True, default=str),
    )
    cols = [
        "experiment", "city", "config", "train_seed", "protocol", "task", "probe", "metric",
        "mean", "std", "n_seeds", "dim", "seconds", "info_json",
    ]  # fmt: skip
    rows = rows[cols]
    with registered(con, rows) as view, transaction(con):
        con.execute(
            f"DELETE FROM {EXPERIMENT_TABLE} WHERE experiment = ? AND city = ? AND config = ? "
            "AND train_seed = ?",
            [experiment, city, config, int(train_seed)],
        )
        con.execute(f"INSERT INTO {EXPERIMENT_TABLE} ({', '.join(cols)}) SELECT * FROM {view}")
    return len(rows)


def read(con: duckdb.DuckDBPyConnection, experiment: str, city: str) -> pd.DataFrame:
    """Every stored row of an experiment for a city."""
    if not table_exists(con, EXPERIMENT_TABLE):  # nothing stored yet (or a read-only store)
        return pd.DataFrame()
    return con.execute(
        f"SELECT * FROM {EXPERIMENT_TABLE} WHERE experiment = ? AND city = ? ORDER BY recorded_at",
        [experiment, city],
    ).df()
