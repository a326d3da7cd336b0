"""evaluation.splits: the paper's random split is unchanged; spatial blocks never straddle
train / validation / test, hold ~20 % of the rows in test and are drawn per seed."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from calliper_pipeline.config import ProbeConfig
from calliper_pipeline.evaluation.splits import (
    BLOCKS,
    RANDOM,
    block_ids,
    block_split,
    fixed_split,
    protocol_split,
)


def _clustered_points(n: int = 5000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """London-like: a dense centre and a sparse outskirt, metres (EPSG:27700-ish values)."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(scale=4_000.0, size=(n // 2, 2))
    outskirt = rng.uniform(-25_000.0, 25_000.0, size=(n - n // 2, 2))
    xy = np.concatenate([centre, outskirt]) + np.array([530_000.0, 180_000.0])
    return xy[:, 0], xy[:, 1]


# ---------------------------------------------------------------- random (the paper's)


def test_fixed_split_indices_are_todays() -> None:
    """Exact indices for n = 20 (pinned before the split moved out of probes.py)."""
    train, val, test = fixed_split(20)
    assert train.tolist() == [16, 14, 10, 12, 9, 19, 11, 6, 18, 2, 4, 7, 3, 13]
    assert val.tolist() == [8, 5]
    assert test.tolist() == [0, 17, 15, 1]
    assert train.dtype == val.dtype == test.dtype == np.int64


@pytest.mark.parametrize("n", [6697, 4994, 37])
def test_fixed_split_is_the_two_sklearn_calls(n: int) -> None:
    rows = np.arange(n, dtype=np.int64)
    rest, test = train_test_split(rows, test_size=0.2, random_state=42)
    train, val = train_test_split(rest, test_size=0.1, random_state=42)
    ours = fixed_split(n)
    for a, b in zip(ours, (train, val, test), strict=True):
        np.testing.assert_array_equal(a, b)


def test_fixed_split_london_luc_head_is_todays() -> None:
    train, val, test = fixed_split(6697)
    assert train[:8].tolist() == [1516, 5717, 653, 6100, 3394, 6546, 5386, 2105]
    assert val[:8].tolist() == [2761, 1479, 711, 103, 2113, 3353, 106, 4849]
    assert test[:8].tolist() == [1881, 2627, 496, 5968, 4104, 1039, 4844, 6610]


def test_random_protocol_ignores_the_seed() -> None:
    x, y = _clustered_points(300)
    a = protocol_split(RANDOM, x, y, seed=1)
    b = protocol_split(RANDOM, x, y, seed=2)
    for u, v, w in zip(a, b, fixed_split(300), strict=True):
        np.testing.assert_array_equal(u, v)
        np.testing.assert_array_equal(u, w)


# ---------------------------------------------------------------- blocks


def test_block_ids_tile_the_extent() -> None:
    x = np.array([0.0, 9.99, 10.0, 99.0, 100.0, 50.0])
    y = np.array([0.0, 0.0, 0.0, 0.0, 100.0, 55.0])
    ids = block_ids(x, y, grid=10)
    # col = floor(x / 10) (max edge to the last block), row = floor(y / 10)
    assert ids.tolist() == [0, 0, 1, 9, 99, 55]
    assert block_ids(np.zeros(3), np.arange(3.0), grid=4).tolist() == [0, 8, 12]
    with pytest.raises(ValueError):
        block_ids(np.array([np.nan]), np.array([0.0]))


@pytest.mark.parametrize("seed", [42, 24, 7, 0, 100])
def test_no_block_on_two_sides_and_test_share(seed: int) -> None:
    x, y = _clustered_points()
    train, val, test = block_split(x, y, seed)
    n = len(x)
    parts = np.concatenate([train, val, test])
    assert len(parts) == n and len(np.unique(parts)) == n  # a partition of the rows
    assert all(len(p) > 0 for p in (train, val, test))
    ids = block_ids(x, y, 10)
    sides = [set(ids[p].tolist()) for p in (train, val, test)]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    assert abs(len(test) / n - 0.2) < 0.04
    assert abs(len(val) / (n - len(test)) - 0.1) < 0.04
    assert all(np.all(np.diff(p) > 0) for p in (train, val, test))  # sorted, int64
    assert train.dtype == np.int64


def test_block_split_is_deterministic_per_seed_and_differs_between_seeds() -> None:
    x, y = _clustered_points()
    a, b = block_split(x, y, 42), block_split(x, y, 42)
    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    c = block_split(x, y, 24)
    assert not np.array_equal(a[2], c[2])
    tests = {tuple(block_split(x, y, s)[2][:10].tolist()) for s in (42, 24, 7, 0, 100)}
    assert len(tests) == 5


def test_block_split_depends_on_points_and_seed_only() -> None:
    """Every encoder and baseline gets the same split: no other input enters."""
    x, y = _clustered_points(800)
    cfg = ProbeConfig(block_grid=10, block_test_fraction=0.2)
    via_protocol = protocol_split(BLOCKS, x, y, 7, cfg)
    direct = block_split(x, y, 7, grid=10, test_fraction=0.2, val_fraction=cfg.val_fraction)
    assert all(np.array_equal(u, v) for u, v in zip(via_protocol, direct, strict=True))


def test_test_fraction_follows_the_config() -> None:
    x, y = _clustered_points()
    _, _, test = protocol_split(BLOCKS, x, y, 3, ProbeConfig(block_test_fraction=0.3))
    assert abs(len(test) / len(x) - 0.3) < 0.05


def test_degenerate_points_raise() -> None:
    with pytest.raises(ValueError, match="non-empty blocks"):
        block_split(np.zeros(50), np.zeros(50), 0)
    with pytest.raises(ValueError):
        block_split(np.arange(10.0), np.arange(10.0), 0, test_fraction=1.0)
    with pytest.raises(ValueError, match="unknown protocol"):
        protocol_split("kfold", np.arange(10.0), np.arange(10.0), 0)
