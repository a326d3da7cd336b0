"""evaluation.protocol: the tidy table carries both protocols; blocks draw per seed and the
same for every encoder; the random protocol is the paper's single split; the report shows
both protocols for every encoder."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from calliper_pipeline.config import ProbeConfig
from calliper_pipeline.evaluation.data import LabelledPoints
from calliper_pipeline.evaluation.protocol import (
    FRAME_COLUMNS,
    evaluate_feature_fn,
    evaluate_features,
    evaluate_task,
)
from calliper_pipeline.evaluation.report import machine_line, results_frame_tidy
from calliper_pipeline.evaluation.splits import block_split, fixed_split

CFG = ProbeConfig(seeds=(1, 2), max_epochs=3, patience=2)


def _points(n: int, task: str, seed: int = 0) -> LabelledPoints:
    """Points spread over a 20 km square (metres); LUC: 3 classes, SDM: 4 proportions."""
    rng = np.random.default_rng(seed)
    x = 530_000.0 + rng.uniform(-10_000, 10_000, n)
    y = 180_000.0 + rng.uniform(-10_000, 10_000, n)
    if task == "luc":
        targets = (x > 530_000).astype(np.int64) + (y > 180_000).astype(np.int64)
        names: tuple[str, ...] = ("a", "b", "c")
    else:
        targets = rng.dirichlet(np.ones(4), size=n).astype(np.float32)
        names = tuple(f"p{i}" for i in range(4))
    return LabelledPoints(
        ids=np.arange(n), x_m=x, y_m=y, lon=x, lat=y, targets=targets, class_names=names, task=task
    )


def _features(points: LabelledPoints) -> np.ndarray:
    return np.stack([(points.x_m - 530_000) / 1e4, (points.y_m - 180_000) / 1e4], 1).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def result():
    luc, sdm = _points(400, "luc"), _points(300, "sdm", seed=1)
    return evaluate_feature_fn(_features, luc, sdm, CFG, name="toy")


def test_tidy_table_carries_both_protocols(result) -> None:
    frame = result.to_frame()
    assert list(frame.columns[: len(FRAME_COLUMNS)]) == list(FRAME_COLUMNS)
    assert set(frame["protocol"]) == {"random", "blocks"}
    per = frame.groupby("protocol").size()
    assert per["random"] == per["blocks"] == 2 * 4 + 2 * 3
    assert (frame["n_seeds"] == 2).all()
    assert result.protocols == ("random", "blocks")
    row = frame.query(
        "protocol == 'blocks' and task == 'luc' and probe == 'mlp' and metric == 'f1'"
    )
    assert result.mean("luc", "mlp", "f1", protocol="blocks") == pytest.approx(row["mean"].item())
    assert result.mean_x100("luc", "mlp", "f1") == pytest.approx(
        100
        * frame.query("protocol == 'random' and task == 'luc' and probe == 'mlp'")
        .set_index("metric")
        .loc["f1", "mean"]
    )


def test_runs_use_the_protocols_splits(result) -> None:
    runs = result.runs_frame()
    luc = _points(400, "luc")
    random_sizes = tuple(len(i) for i in fixed_split(400))
    assert result.split_sizes["luc"] == random_sizes
    rnd = runs.query("protocol == 'random' and task == 'luc'")
    assert set(zip(rnd["n_train"], rnd["n_val"], rnd["n_test"], strict=True)) == {random_sizes}
    for seed in CFG.seeds:
        expected = tuple(len(i) for i in block_split(luc.x_m, luc.y_m, seed))
        blk = runs.query("protocol == 'blocks' and task == 'luc' and seed == @seed")
        assert set(zip(blk["n_train"], blk["n_val"], blk["n_test"], strict=True)) == {expected}


def test_random_protocol_is_unchanged_by_adding_blocks() -> None:
    luc = _points(400, "luc")
    x = _features(luc)
    both = evaluate_features(x, luc, None, None, CFG)
    alone = evaluate_task(x, luc, CFG, protocol="random")
    rnd = [r for r in both.runs if r.protocol == "random"]
    assert [r.metrics for r in rnd] == [r.metrics for r in alone]
    assert [r.fit.val_losses for r in rnd] == [r.fit.val_losses for r in alone]


def test_block_runs_repeat_and_protocols_can_be_chosen() -> None:
    luc = _points(400, "luc")
    x = _features(luc)
    a = evaluate_task(x, luc, CFG, protocol="blocks")
    b = evaluate_task(x, luc, CFG, protocol="blocks")
    assert [r.metrics for r in a] == [r.metrics for r in b]
    only = evaluate_features(x, luc, None, None, CFG, protocols=("blocks",))
    assert set(only.to_frame()["protocol"]) == {"blocks"}
    with pytest.raises(ValueError):
        evaluate_features(x, luc, None, None, CFG, protocols=("kfold",))
    with pytest.raises(ValueError):
        evaluate_task(x, luc, CFG, protocol="kfold")


def test_report_shows_both_protocols_for_every_encoder(result) -> None:
    frame = pd.concat([result.to_frame(), result.to_frame().assign(encoder="other")])
    table = results_frame_tidy(frame, with_paper=True)
    ours = table[table["encoder"].isin(["toy", "other"])]
    assert sorted(zip(ours["encoder"], ours["protocol"], strict=True)) == [
        ("other", "blocks"),
        ("other", "random"),
        ("toy", "blocks"),
        ("toy", "random"),
    ]
    assert (table[table["encoder"].str.startswith("paper")]["protocol"] == "random").all()
    assert "protocol" in table.columns and table.iloc[0]["protocol"] == "random"
    line = machine_line("toy-mlp", frame, "toy")
    blocks = machine_line("toy-mlp-blocks", frame, "toy", protocol="blocks")
    f1 = 100 * result.mean("luc", "mlp", "f1")
    assert line.startswith("toy-mlp: luc_f1=") and f"{f1:.2f}" in line
    assert blocks != line.replace("toy-mlp", "toy-mlp-blocks")


def test_report_reads_frames_without_a_protocol_column(result) -> None:
    old = result.to_frame().query("protocol == 'random'").drop(columns="protocol")
    table = results_frame_tidy(old, with_paper=False)
    assert table["protocol"].tolist() == ["random"]
