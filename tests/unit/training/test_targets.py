"""Neighbourhood targets and background points (training.targets)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely

from calliper_pipeline.training.targets import (
    mixture_groups,
    neighbourhood_heads,
    sample_background,
)


def _layout() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three POIs (texts 0, 0, 1) near the origin; text 2 is the empty text."""
    poi_xy = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 300.0]])
    text_index = np.array([0, 0, 1])
    rng = np.random.default_rng(0)
    table = rng.normal(size=(3, 8)).astype(np.float32)
    table /= np.linalg.norm(table, axis=1, keepdims=True)
    return poi_xy, text_index, table


def test_neighbourhood_target_is_the_normalised_mean(tmp_path: Path) -> None:
    poi_xy, text_index, table = _layout()
    query = np.array([[0.0, 50.0], [0.0, 0.0], [5000.0, 5000.0]])
    r200, r500 = neighbourhood_heads(poi_xy, text_index, table, query, (200, 500), 2, tmp_path)
    assert (r200.name, r500.name) == ("r200", "r500")
    assert r200.weights is not None and r500.weights is not None

    def normalised(v: np.ndarray) -> np.ndarray:
        return v / np.linalg.norm(v)

    # (0, 50): within 200 m of the two text-0 POIs only; within 500 m of all three
    np.testing.assert_allclose(r200.weights[0] @ table, normalised(2 * table[0]), atol=1e-6)
    want = normalised((2 * table[0] + table[1]) / 3)
    np.testing.assert_allclose(r500.weights[0] @ table, want, atol=1e-6)
    # far away: nothing within either radius -> the empty text exactly
    np.testing.assert_array_equal(r200.weights[2], [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(r500.weights[2], [0.0, 0.0, 1.0])
    # the cache gives the same arrays back
    again = neighbourhood_heads(poi_xy, text_index, table, query, (200, 500), 2, tmp_path)
    np.testing.assert_array_equal(again[0].weights, r200.weights)
    assert len(list(tmp_path.glob("*.npz"))) == 1


def test_groups_are_equal_exactly_for_equal_targets() -> None:
    w = np.array([[1, 0], [0.5, 0.5], [1, 0], [0, 1]], np.float32)
    g = mixture_groups(w)
    assert g[0] == g[2] and len({g[0], g[1], g[3]}) == 3


def test_background_points_lie_inside_a_non_convex_polygon() -> None:
    # a U shape: the notch (4..6, 2..10) is inside the bounding box but outside the polygon
    poly = shapely.Polygon([(0, 0), (10, 0), (10, 10), (6, 10), (6, 2), (4, 2), (4, 10), (0, 10)])
    pts = sample_background(poly, 2000, seed=7)
    assert pts.shape == (2000, 2)
    assert shapely.contains_xy(poly, pts[:, 0], pts[:, 1]).all()
    in_notch = (pts[:, 0] > 4) & (pts[:, 0] < 6) & (pts[:, 1] > 2)
    assert not in_notch.any()
    np.testing.assert_array_equal(pts, sample_background(poly, 2000, seed=7))
    assert not np.array_equal(pts, sample_background(poly, 2000, seed=8))


def test_empty_prior_makes_targets_density_aware(tmp_path: Path) -> None:
    poi_xy, text_index, table = _layout()
    # (0, 50) has two text-0 POIs within 200 m, (0, 250) one text-1 POI, (5000, 5000) none
    query = np.array([[0.0, 50.0], [0.0, 250.0], [5000.0, 5000.0]])
    plain = neighbourhood_heads(poi_xy, text_index, table, query, (200,), 2, tmp_path)[0]
    (dense,) = neighbourhood_heads(poi_xy, text_index, table, query, (200,), 2, tmp_path, 0.5)
    assert plain.weights is not None and dense.weights is not None
    assert len(list(tmp_path.glob("*.npz"))) == 2  # the prior is part of the cache key
    # mean count within 200 m over the three points = (2 + 1 + 0) / 3 = 1, so k = 0.5
    k = 0.5

    def normalised(v: np.ndarray) -> np.ndarray:
        return v / np.linalg.norm(v)

    np.testing.assert_allclose(
        dense.weights[0] @ table, normalised(2 * table[0] + k * table[2]), atol=1e-6
    )
    np.testing.assert_allclose(
        dense.weights[1] @ table, normalised(table[1] + k * table[2]), atol=1e-6
    )
    np.testing.assert_allclose(dense.weights[2] @ table, table[2], atol=1e-6)
    # the sparser place leans further towards the empty text than the denser one
    share = dense.weights[:, 2] / dense.weights.sum(axis=1)
    assert share[0] < share[1] < share[2] == 1.0
    # without the prior the empty text appears only where nothing is counted
    assert plain.weights[0, 2] == plain.weights[1, 2] == 0.0
    with pytest.raises(ValueError, match="empty_prior"):
        neighbourhood_heads(poi_xy, text_index, table, query, (200,), 2, None, -1.0)
