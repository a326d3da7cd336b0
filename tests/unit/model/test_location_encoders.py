"""Metric positional encodings (grid, theory, direct): golden values, float32 precision, casts.

Measured on this machine (documented so a regression is visible):
- (a) float64 raw coordinates, centre (0, 0) vs the authors' float64 golden: ~3e-17.
- (b) float32 centred coordinates, centre (530000, 180000): grid 2.0e-6, theory 2.6e-6; most of
  it is the float32 rounding of the centred input itself (0.5 mm at 14 km).
- (c) float32 *raw* coordinates: 2.9e-4 (about 150x worse than (b)).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
import torch

from calliper_pipeline.config import EncoderConfig
from calliper_pipeline.errors import ConfigError, ModelInputError
from calliper_pipeline.model.encodings import build_positional_encoding
from calliper_pipeline.model.encodings.direct import DirectEncoding
from calliper_pipeline.model.encodings.grid import GridEncoding
from calliper_pipeline.model.encodings.multiscale import TABLE_HALF_STEPS, TABLE_STEP_M
from calliper_pipeline.model.encodings.theory import TheoryEncoding
from tests.support.paths import data_root

CENTRE = (530_000.0, 180_000.0)  # BNG metres, near Charing Cross
LONDON_BOUNDS_M = (503_000.0, 155_000.0, 562_000.0, 201_000.0)  # Greater London, EPSG:27700


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    path = data_root() / "golden" / "positional_encodings.json"
    if not path.exists():
        pytest.skip(f"golden encodings not found at {path} (set CALLIPER_DATA_ROOT)")
    return json.loads(path.read_text())


def reference(name: str, points: np.ndarray, s: int = 32) -> np.ndarray:
    """Independent float64 Space2Vec grid/theory of raw metres (loops, no shared code)."""
    lam = 100.0 * (10_000.0 / 100.0) ** (np.arange(s) / (s - 1))
    if name == "grid":
        rows = []
        for x, y in points:
            rows.append([f(c / wl) for c in (x, y) for wl in lam for f in (math.sin, math.cos)])
        return np.asarray(rows)
    units = [(1.0, 0.0), (-0.5, math.sqrt(3) / 2), (-0.5, -math.sqrt(3) / 2)]
    rows = []
    for x, y in points:
        proj = [ux * x + uy * y for ux, uy in units]
        rows.append([f(p / wl) for wl in lam for p in proj for f in (math.sin, math.cos)])
    return np.asarray(rows)


def london_points(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = LONDON_BOUNDS_M
    return np.stack([rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)], axis=1)


def centred32(points: np.ndarray, centre: tuple[float, float] = CENTRE) -> torch.Tensor:
    """Centre in float64, then cast: what the pipeline feeds the model."""
    return torch.from_numpy((points - np.asarray(centre)).astype(np.float32))


ENCODINGS = {"grid": GridEncoding, "theory": TheoryEncoding}


@pytest.mark.parametrize("name", ENCODINGS)
def test_golden_float64_raw_matches_authors(golden: dict[str, Any], name: str) -> None:
    pe = ENCODINGS[name]()  # centre (0, 0): raw coordinates
    out = pe(torch.tensor(golden["coords_epsg27700_m"], dtype=torch.float64))
    assert out.dtype == torch.float64
    assert out.shape == (5, 128 if name == "grid" else 192)
    np.testing.assert_allclose(out.numpy(), np.asarray(golden[name]), rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", ENCODINGS)
def test_golden_float32_centred_matches_authors(golden: dict[str, Any], name: str) -> None:
    pe = ENCODINGS[name](centre_m=CENTRE)
    out = pe(centred32(np.asarray(golden["coords_epsg27700_m"])))
    assert out.dtype == torch.float32
    error = np.abs(out.double().numpy() - np.asarray(golden[name])).max()
    assert error < 1e-5  # measured 2.0e-6 (grid), 2.6e-6 (theory)


@pytest.mark.parametrize("name", ENCODINGS)
def test_golden_naive_float32_raw_is_much_worse(golden: dict[str, Any], name: str) -> None:
    raw32 = torch.tensor(golden["coords_epsg27700_m"], dtype=torch.float32)
    naive = np.abs(ENCODINGS[name]()(raw32).double().numpy() - np.asarray(golden[name])).max()
    centred = ENCODINGS[name](centre_m=CENTRE)(centred32(np.asarray(golden["coords_epsg27700_m"])))
    good = np.abs(centred.double().numpy() - np.asarray(golden[name])).max()
    assert naive > 1e-4  # measured 2.9e-4: float32 spacing at 5e5 m is 3 cm
    assert naive > 30 * good


def test_reference_matches_golden(golden: dict[str, Any]) -> None:
    points = np.asarray(golden["coords_epsg27700_m"])
    for name in ENCODINGS:
        np.testing.assert_allclose(reference(name, points), golden[name], rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", ENCODINGS)
def test_float32_centred_precision_on_london_points(name: str) -> None:
    points = london_points(400)
    pe = ENCODINGS[name](centre_m=CENTRE)
    q32 = centred32(points)
    out = pe(q32).double().numpy()
    # The arithmetic: reference evaluated at exactly the point the float32 input represents.
    represented = q32.double().numpy() + np.asarray(CENTRE)
    assert np.abs(out - reference(name, represented)).max() < 1e-6  # measured ~7e-7
    # End to end against the raw float64 points: adds the input's own float32 rounding
    # (<= 1 mm beyond 16 km from the centre, i.e. <= 1e-5 rad at lambda = 100 m per axis).
    end_to_end = np.abs(out - reference(name, points)).max()
    assert end_to_end < (1e-5 if name == "grid" else 1.5e-5)


def test_beyond_the_phase_table_stays_correct() -> None:
    far = TABLE_HALF_STEPS * TABLE_STEP_M + 70_000.0  # 201 km east of the centre
    points = np.asarray([[CENTRE[0] + far, CENTRE[1] - far / 2]])
    out = GridEncoding(centre_m=CENTRE)(centred32(points)).double().numpy()
    assert np.abs(out - reference("grid", points)).max() < 1e-3  # plain float32 precision


def test_nan_input_gives_nan_row_without_crashing() -> None:
    coords = torch.tensor([[1.0, 2.0], [float("nan"), 0.0]])
    out = GridEncoding(centre_m=CENTRE)(coords)
    assert torch.isfinite(out[0]).all()
    assert torch.isnan(out[1, :64]).all()  # the x features


def test_bf16_autocast_keeps_float32_precision() -> None:
    pe = GridEncoding(centre_m=CENTRE)
    q32 = centred32(london_points(64))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = pe(q32)
    assert under_autocast.dtype == torch.float32
    assert (under_autocast - pe(q32)).abs().max() < 1e-6


def test_module_casts_do_not_round_the_phase_tables() -> None:
    pe = GridEncoding(centre_m=CENTRE)
    q32 = centred32(london_points(64))
    expected = pe(q32)
    pe.half()
    assert pe.table_x.dtype == torch.float32 and pe.phase64.dtype == torch.float64
    assert torch.equal(pe(q32), expected)
    pe.double().to("cpu")
    assert torch.equal(pe(q32), expected)
    assert pe(q32.half()).dtype == torch.float16  # output follows the input dtype


def test_state_dict_holds_only_the_centre_and_checks_it() -> None:
    pe = TheoryEncoding(centre_m=CENTRE)
    state = pe.state_dict()
    assert list(state) == ["centre_m"]
    assert state["centre_m"].dtype == torch.float64
    TheoryEncoding(centre_m=CENTRE).load_state_dict(state)
    with pytest.raises(ConfigError, match="centre_m"):
        TheoryEncoding(centre_m=(0.0, 0.0)).load_state_dict(state)


def test_wavelengths_and_feature_order() -> None:
    pe = GridEncoding(min_lambda_m=10.0, max_lambda_m=1000.0, frequency_num=3)
    assert pe.wavelengths_m == pytest.approx((10.0, 100.0, 1000.0))
    out = pe(torch.tensor([[50.0, -200.0]], dtype=torch.float64))[0].numpy()
    expected = [
        f(c / lam) for c in (50.0, -200.0) for lam in (10, 100, 1000) for f in (np.sin, np.cos)
    ]
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)


def test_direct_is_scaled_centred_metres() -> None:
    pe = build_positional_encoding(EncoderConfig(pe="direct"), centre_m=CENTRE)
    assert isinstance(pe, DirectEncoding) and pe.input_space == "metric" and pe.out_dim == 2
    coords = torch.tensor([[-25_000.0, 10_000.0]])
    assert torch.equal(pe(coords), torch.tensor([[-2.5, 1.0]]))


@pytest.mark.parametrize(
    "cfg",
    [
        EncoderConfig(frequency_num=0),
        EncoderConfig(min_lambda_m=0.0),
        EncoderConfig(min_lambda_m=1000.0, max_lambda_m=100.0),
    ],
)
def test_invalid_metric_configs_raise(cfg: EncoderConfig) -> None:
    with pytest.raises(ConfigError):
        build_positional_encoding(cfg)


@pytest.mark.parametrize("shape", [(5,), (5, 3), (0, 2, 1)])
def test_bad_coordinate_shapes_raise(shape: tuple[int, ...]) -> None:
    with pytest.raises(ModelInputError):
        GridEncoding()(torch.zeros(shape))
    with pytest.raises(ModelInputError):
        GridEncoding()(torch.zeros(5, 2, dtype=torch.int64))
