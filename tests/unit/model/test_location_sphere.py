"""Lon/lat encodings: spherical harmonics, Sphere2Vec variants and wrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from calliper_pipeline.config import EncoderConfig
from calliper_pipeline.errors import ConfigError
from calliper_pipeline.model.encodings import build_positional_encoding
from calliper_pipeline.model.encodings.sphere2vec import SphereC
from calliper_pipeline.model.encodings.spherical_harmonics import SphericalHarmonics
from calliper_pipeline.model.encodings.wrap import WrapEncoding

SPHERE_NAMES = ("spherec", "spherec+", "spherem", "spherem+", "sphericalharmonics", "wrap")
EDGE_POINTS = [[180.0, 0.0], [-180.0, 0.0], [0.0, 90.0], [0.0, -90.0], [180.0, 90.0], [-180, -90]]


@pytest.mark.parametrize("degree", [10, 20])
def test_spherical_harmonics_are_orthonormal(degree: int) -> None:
    # Gauss-Legendre in cos(theta) times a uniform azimuth grid integrates these exactly.
    x, w = np.polynomial.legendre.leggauss(degree + 1)
    n_phi = 2 * degree + 2
    phi = 2 * math.pi * np.arange(n_phi) / n_phi
    lat = np.degrees(-np.arcsin(x))  # theta = lat + 90 deg, so cos(theta) = -sin(lat)
    lon = np.degrees(phi) - 180.0  # phi = lon + 180 deg
    grid = np.stack(np.meshgrid(lon, lat), axis=-1).reshape(-1, 2)
    weight = np.repeat(w, n_phi) * (2 * math.pi / n_phi)
    y = SphericalHarmonics(degree)(torch.from_numpy(grid)).numpy()
    gram = y.T @ (y * weight[:, None])
    np.testing.assert_allclose(gram, np.eye(degree * degree), rtol=0, atol=1e-10)


def test_spherical_harmonics_low_degrees_closed_form() -> None:
    lon, lat = 37.0, -21.0
    theta, phi = math.radians(lat + 90), math.radians(lon + 180)
    c = math.sqrt(3 / (4 * math.pi))
    expected = [
        1 / math.sqrt(4 * math.pi),  # (0, 0)
        c * math.sin(theta) * math.sin(phi),  # (1, -1)
        c * math.cos(theta),  # (1, 0)
        c * math.sin(theta) * math.cos(phi),  # (1, 1)
        math.sqrt(15 / (4 * math.pi)) * math.sin(theta) ** 2 * math.sin(phi) * math.cos(phi),
        math.sqrt(15 / (4 * math.pi)) * math.sin(theta) * math.cos(theta) * math.sin(phi),
        math.sqrt(5 / (16 * math.pi)) * (3 * math.cos(theta) ** 2 - 1),  # (2, 0)
    ]
    out = SphericalHarmonics(3)(torch.tensor([[lon, lat]], dtype=torch.float64))[0]
    np.testing.assert_allclose(out[:7].numpy(), expected, rtol=0, atol=1e-12)


def sphere2vec_reference(
    name: str, lon: float, lat: float, r_min_deg: float, s: int
) -> list[float]:
    """Sphere2Vec terms from the paper's definitions, one point, float64 loops."""
    lam, phi = math.radians(lon), math.radians(lat)
    r_min = math.radians(r_min_deg)
    out: list[float] = []
    for i in range(s):
        r = r_min * (1.0 / r_min) ** (i / (s - 1))
        ls, ps = lam / r, phi / r
        sin, cos = math.sin, math.cos
        terms = {
            "spherec": [sin(ps), cos(ps) * cos(ls), cos(ps) * sin(ls)],
            "spherec+": [sin(ps), cos(ps), sin(ls), cos(ls), cos(ps) * cos(ls), cos(ps) * sin(ls)],
            "spherem": [
                sin(ps),
                cos(ps) * cos(lam),
                cos(phi) * cos(ls),
                cos(ps) * sin(lam),
                cos(phi) * sin(ls),
            ],
        }
        terms["spherem+"] = [sin(ps), cos(ps), sin(ls), cos(ls), *terms["spherem"][1:]]
        out += terms[name]
    return out


@pytest.mark.parametrize("name", ["spherec", "spherec+", "spherem", "spherem+"])
def test_sphere2vec_matches_definitions(name: str) -> None:
    cfg = EncoderConfig(pe=name, min_radius_deg=0.01, frequency_num=5)
    pe = build_positional_encoding(cfg)
    point = (-0.1276, 51.5072)
    out = pe(torch.tensor([point], dtype=torch.float64))[0].numpy()
    np.testing.assert_allclose(out, sphere2vec_reference(name, *point, 0.01, 5), atol=1e-12)


def test_spherec_coarsest_scale_is_the_unit_vector() -> None:
    pe = SphereC(min_radius_deg=0.001, frequency_num=4)
    assert pe.radii_rad[-1] == pytest.approx(1.0)
    assert pe.radii_rad[0] == pytest.approx(math.radians(0.001))
    lon, lat = 100.0, -35.0
    out = pe(torch.tensor([[lon, lat]], dtype=torch.float64))[0].reshape(4, 3)
    lam, phi = math.radians(lon), math.radians(lat)
    unit = [math.sin(phi), math.cos(phi) * math.cos(lam), math.cos(phi) * math.sin(lam)]
    np.testing.assert_allclose(out[-1].numpy(), unit, atol=1e-12)
    np.testing.assert_allclose(out.norm(dim=1).numpy(), 1.0, atol=1e-12)  # every scale


@pytest.mark.parametrize("name", SPHERE_NAMES)
def test_finite_at_poles_and_antimeridian(name: str) -> None:
    pe = build_positional_encoding(EncoderConfig(pe=name))
    for dtype in (torch.float32, torch.float64):
        out = pe(torch.tensor(EDGE_POINTS, dtype=dtype))
        assert out.dtype == dtype and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["sphericalharmonics", "wrap"])
def test_continuous_across_the_antimeridian(name: str) -> None:
    pe = build_positional_encoding(EncoderConfig(pe=name))
    east = pe(torch.tensor([[180.0, 12.0]], dtype=torch.float64))
    west = pe(torch.tensor([[-180.0, 12.0]], dtype=torch.float64))
    assert (east - west).abs().max() < 1e-12


def test_spherical_harmonics_do_not_depend_on_longitude_at_a_pole() -> None:
    pe = SphericalHarmonics(10)
    poles = torch.tensor([[lon, 90.0] for lon in (-170.0, 0.0, 45.0)], dtype=torch.float64)
    out = pe(poles)
    assert (out - out[:1]).abs().max() < 1e-12


def test_wrap_values() -> None:
    out = WrapEncoding()(torch.tensor([[90.0, -30.0]], dtype=torch.float64))[0]
    expected = [0.0, 1.0, math.sqrt(3) / 2, -0.5]  # cos lon, sin lon, cos lat, sin lat
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-12)


@pytest.mark.parametrize(
    "cfg",
    [
        EncoderConfig(pe="spherec", min_radius_deg=0.0),
        EncoderConfig(pe="spherem", min_radius_deg=90.0),
        EncoderConfig(pe="sphericalharmonics", legendre_polys=0),
    ],
)
def test_invalid_sphere_configs_raise(cfg: EncoderConfig) -> None:
    with pytest.raises(ConfigError):
        build_positional_encoding(cfg)
