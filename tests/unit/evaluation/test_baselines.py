"""Baseline feature builders: coordinates, POI counts by hand, the bare positional encoding
against the authors' golden values, and the untrained encoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from calliper_pipeline.config import EncoderConfig
from calliper_pipeline.evaluation.baselines import (
    poi_count_feature_names,
    poi_count_features,
    positional_encoding_features,
    raw_coordinate_features,
    untrained_encoder_features,
)
from tests.support.paths import data_root

LONDON_CENTRE_M = (530_000.0, 180_000.0)


def test_raw_coordinates_min_max() -> None:
    x = np.array([500_000.0, 510_000.0, 530_000.0])
    y = np.array([180_000.0, 170_000.0, 190_000.0])
    f = raw_coordinate_features(x, y)
    assert f.dtype == np.float32 and f.shape == (3, 2)
    assert f.min() == 0.0 and f.max() == 1.0
    np.testing.assert_allclose(f[:, 0], [0.0, 1 / 3, 1.0], rtol=1e-6)
    np.testing.assert_allclose(f[:, 1], [0.5, 0.0, 1.0], rtol=1e-6)
    wide = raw_coordinate_features(
        x, y, ref_x=np.array([490_000.0, 540_000.0]), ref_y=np.array([170_000.0, 190_000.0])
    )
    np.testing.assert_allclose(wide[:, 0], [0.2, 0.4, 0.8], rtol=1e-6)
    with pytest.raises(ValueError):
        raw_coordinate_features(np.ones(3), y)


def test_poi_counts_hand_placed() -> None:
    # query 0 at the origin; query 1 far away. Distances from the origin along the axes:
    # "a": 100, 300, 300 (other side), 700, 1500, 2500; "b": 50, 1000 (on the circle: counts);
    # "zzz" is not asked for and must be ignored.
    px = np.array([100.0, 300.0, -300.0, 0.0, 0.0, 2500.0, 50.0, 1000.0, 10.0])
    py = np.array([0.0, 0.0, 0.0, 700.0, -1500.0, 0.0, 0.0, 0.0, 0.0])
    cat = np.array(["a", "a", "a", "a", "a", "a", "b", "b", "zzz"])
    qx, qy = np.array([0.0, 100_000.0]), np.array([0.0, 0.0])
    cats = ["a", "b", "c"]
    f = poi_count_features(qx, qy, px, py, cat, cats)
    assert f.shape == (2, 4 * 3) and f.dtype == np.float32
    counts = np.rint(np.expm1(f.astype(np.float64))).astype(int)
    #                    200 m    500 m    1000 m   2000 m    (a, b, c at each radius)
    assert counts[0].tolist() == [1, 1, 0, 3, 1, 0, 4, 2, 0, 5, 2, 0]
    assert counts[1].tolist() == [0] * 12
    np.testing.assert_allclose(f[0, 3], np.log1p(3), rtol=1e-6)
    assert poi_count_feature_names(cats)[:4] == ["a@200m", "b@200m", "c@200m", "a@500m"]
    default = poi_count_features(qx, qy, px, py, cat, radii_m=(500.0,))
    assert np.rint(np.expm1(default[0])).astype(int).tolist() == [3, 1, 1]  # a, b, zzz


def test_poi_counts_reject_bad_input() -> None:
    one = np.zeros(1)
    with pytest.raises(ValueError):
        poi_count_features(one, one, np.zeros(2), np.zeros(2), np.array(["a"]))
    with pytest.raises(ValueError):
        poi_count_features(one, one, one, one, np.array([None]))
    with pytest.raises(ValueError):
        poi_count_features(one, one, one, one, np.array(["a"]), radii_m=(0.0,))


@pytest.fixture(scope="module")
def golden() -> dict[str, list]:
    path = data_root() / "golden" / "positional_encodings.json"
    if not path.is_file():
        pytest.skip(f"golden positional encodings not found: {path}")
    with open(path) as fh:
        return json.load(fh)


def test_positional_encoding_alone_matches_the_authors(golden: dict[str, list]) -> None:
    pytest.importorskip("calliper_pipeline.model.encodings")
    coords = np.asarray(golden["coords_epsg27700_m"], np.float64)
    cfg = EncoderConfig(
        pe="grid",
        min_lambda_m=float(golden["min_lambda_m"]),
        max_lambda_m=float(golden["max_lambda_m"]),
        frequency_num=int(golden["frequency_num"]),
    )
    f = positional_encoding_features(coords[:, 0], coords[:, 1], cfg, LONDON_CENTRE_M)
    assert f.shape == (5, 128) and f.dtype == np.float32
    np.testing.assert_allclose(f, np.asarray(golden["grid"]), atol=1e-5)


def test_untrained_encoder_is_seeded_and_deterministic() -> None:
    pytest.importorskip("calliper_pipeline.model.encodings")
    rng = np.random.default_rng(0)
    x = 530_000 + rng.uniform(-20_000, 20_000, 50)
    y = 180_000 + rng.uniform(-20_000, 20_000, 50)
    cfg = EncoderConfig()
    state = torch.get_rng_state()
    a = untrained_encoder_features(x, y, cfg, LONDON_CENTRE_M, seed=42)
    assert torch.equal(torch.get_rng_state(), state)
    b = untrained_encoder_features(x, y, cfg, LONDON_CENTRE_M, seed=42)
    c = untrained_encoder_features(x, y, cfg, LONDON_CENTRE_M, seed=7)
    assert a.shape == (50, cfg.embed_dim) and a.dtype == np.float32
    assert np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)  # same seed, eval mode (dropout off)
    assert not np.allclose(a, c)
