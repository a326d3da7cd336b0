"""store.metrics: the evaluation table round-trips the protocol column, migrates a store
written before it, and the flat metric keys name the protocol."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from calliper_pipeline.constants import EVALUATION_TABLE
from calliper_pipeline.store import metrics as results


def _frame(protocols: tuple[str, ...] = ("random", "blocks")) -> pd.DataFrame:
    rows = []
    for i, protocol in enumerate(protocols):
        for task, metric, value in (("luc", "f1", 0.30), ("sdm", "l1", 0.20)):
            rows.append(
                {"encoder": "enc", "protocol": protocol, "task": task, "probe": "mlp"}
                | {"metric": metric, "mean": value - 0.1 * i, "std": 0.01, "n_seeds": 5}
            )
    return pd.DataFrame(rows)


OLD_DDL = f"""
CREATE TABLE {EVALUATION_TABLE} (
    city VARCHAR NOT NULL, model_name VARCHAR NOT NULL, model_version VARCHAR NOT NULL,
    mlflow_run_id VARCHAR, encoder VARCHAR NOT NULL, task VARCHAR NOT NULL,
    probe VARCHAR NOT NULL, metric VARCHAR NOT NULL, mean DOUBLE NOT NULL, std DOUBLE,
    n_seeds INTEGER NOT NULL, evaluated_at TIMESTAMP NOT NULL
)"""


def _old_store() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(OLD_DDL)
    con.execute(
        f"INSERT INTO {EVALUATION_TABLE} VALUES "
        "('london', 'm', '1', NULL, 'enc', 'luc', 'mlp', 'f1', 0.25, 0.01, 5, now())"
    )
    return con


def test_protocol_column_round_trips() -> None:
    con = duckdb.connect()
    assert results.write_evaluation(con, "london", "m", "1", "run", _frame()) == 4
    back = results.read_evaluation(con, "london", "m", "1")
    assert list(back.columns) == list(results.RESULT_COLUMNS)
    assert sorted(set(zip(back["protocol"], back["task"], strict=True))) == [
        ("blocks", "luc"),
        ("blocks", "sdm"),
        ("random", "luc"),
        ("random", "sdm"),
    ]
    assert len(results.read_evaluation(con, "london", protocol="blocks")) == 2
    assert results.score(con, "london", "m", "1", "luc.mlp.f1") == pytest.approx(0.30)
    assert results.score(con, "london", "m", "1", "blocks.luc.mlp.f1") == pytest.approx(0.20)
    assert results.score(con, "london", "m", "1", "blocks.luc.linear.f1") is None


def test_rewrite_replaces_only_the_protocols_and_tasks_written() -> None:
    con = duckdb.connect()
    results.write_evaluation(con, "london", "m", "1", None, _frame())
    again = _frame(("blocks",)).query("task == 'luc'").assign(mean=0.5)
    results.write_evaluation(con, "london", "m", "1", None, again)
    back = results.read_evaluation(con, "london", "m", "1")
    assert len(back) == 4
    assert results.score(con, "london", "m", "1", "blocks.luc.mlp.f1") == pytest.approx(0.5)
    assert results.score(con, "london", "m", "1", "luc.mlp.f1") == pytest.approx(0.30)


def test_frame_without_protocol_is_random() -> None:
    con = duckdb.connect()
    results.write_evaluation(con, "c", "m", "1", None, _frame(("random",)).drop(columns="protocol"))
    assert set(results.read_evaluation(con)["protocol"]) == {"random"}


def test_old_store_reads_as_random_and_is_migrated_on_write() -> None:
    con = _old_store()
    before = results.read_evaluation(con)  # not migrated yet (a read-only reader's view)
    assert before["protocol"].tolist() == ["random"]
    assert results.score(con, "london", "m", "1", "luc.mlp.f1") == pytest.approx(0.25)
    assert results.score(con, "london", "m", "1", "blocks.luc.mlp.f1") is None
    results.write_evaluation(con, "london", "m", "2", None, _frame())
    cols = [r[0] for r in con.execute(f"DESCRIBE {EVALUATION_TABLE}").fetchall()]
    assert "protocol" in cols
    back = results.read_evaluation(con, "london", "m")
    assert len(back) == 5
    assert back.query("model_version == '1'")["protocol"].tolist() == ["random"]
    results.ensure_schema(con)  # idempotent
    assert len(results.read_evaluation(con)) == 5


def test_metric_keys() -> None:
    assert results.metric_key("luc", "mlp", "f1") == "luc.mlp.f1"
    assert results.metric_key("luc", "mlp", "f1", "blocks") == "blocks.luc.mlp.f1"
    assert results.parse_metric_key("luc.mlp.f1") == ("random", "luc", "mlp", "f1")
    assert results.parse_metric_key("blocks.sdm.mlp.l1") == ("blocks", "sdm", "mlp", "l1")
    for bad in ("luc.f1", "random.luc.mlp.f1", "kfold.luc.mlp.f1", "a..b"):
        with pytest.raises(ValueError):
            results.parse_metric_key(bad)
    assert results.split_metric_key("luc.mlp.f1") == ("luc", "mlp", "f1")
    assert results.higher_is_better("blocks.luc.mlp.f1")
    assert not results.higher_is_better("blocks.sdm.mlp.l1")
    flat = results.flat_metrics(_frame())
    assert flat["luc.mlp.f1"] == pytest.approx(0.30)
    assert flat["blocks.luc.mlp.f1"] == pytest.approx(0.20)
    assert flat["blocks.sdm.mlp.l1_std"] == pytest.approx(0.01)
    assert len(flat) == 8


def test_evaluation_rows_are_replaced_per_version_and_task(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "encoder": ["e", "e"],
            "task": ["luc", "luc"],
            "probe": ["mlp", "linear"],
            "metric": ["f1", "f1"],
            "mean": [0.5, 0.4],
            "std": [0.01, 0.02],
            "n_seeds": [5, 5],
        }
    )
    con = duckdb.connect(str(tmp_path / "e.duckdb"))
    for _ in range(2):  # idempotent
        assert results.write_evaluation(con, "x", "calliper_x", "1", "run", frame) == 2
    results.write_evaluation(con, "x", "calliper_x", "2", "run2", frame.assign(mean=[0.7, 0.6]))
    assert len(results.read_evaluation(con, "x")) == 4
    assert results.score(con, "x", "calliper_x", "1", "luc.mlp.f1") == 0.5
    assert results.score(con, "x", "calliper_x", "2", "luc.mlp.f1") == 0.7
    assert results.score(con, "x", "calliper_x", "2", "sdm.mlp.kl") is None
    with pytest.raises(ValueError):
        results.split_metric_key("luc.f1")
