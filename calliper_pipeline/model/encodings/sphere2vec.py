"""Sphere2Vec encodings (Mai et al., ISPRS J. 2023): sphereC, sphereC+, sphereM, sphereM+.

Input is (lon, lat) in degrees, converted to radians ``lambda`` (longitude) and ``phi``
(latitude). At S scales ``r_s = r_min * (r_max / r_min) ** (s / (S - 1))`` (radians, s = 0..S-1,
finest first) the scaled angles are ``lambda_s = lambda / r_s`` and ``phi_s = phi / r_s``, with
``r_min = radians(min_radius_deg)`` and ``r_max = 1`` radian, so that the coarsest scale is the
sphere itself (sphereC at ``r = 1`` is the 3-D unit vector of the point). Features are grouped
by scale, finest first, and within a scale the terms are those listed by each class, in the order
of Sphere2Vec's reference implementation.

Our config has only ``min_radius_deg``; ``r_max = 1`` rad is our choice (Sphere2Vec leaves both
as hyper-parameters). CaLLiPer's and SatCLIP's ``GridAndSphere`` skip the degree-to-radian step
and pass the metric ``min_lambda``/``max_lambda`` to these encodings, which is not meaningful for
degrees; we follow Sphere2Vec instead.

Precision: the angles are computed in float64 whatever the input dtype, and the result is cast
to the input dtype. At ``min_radius_deg = 0.001`` the finest angle is ``lat / 0.001 deg`` (~5e4
rad for London), so float32 *input* (lat spacing ~4e-6 deg, ~0.4 m) limits the finest scales to
~4e-3 rad; pass float64 lon/lat when that matters.
"""

from __future__ import annotations

import math
from typing import ClassVar, Self

import torch
from torch import Tensor

from calliper_pipeline.config import EncoderConfig
from calliper_pipeline.errors import ConfigError
from calliper_pipeline.model.encodings.base import (
    InputSpace,
    PositionalEncoding,
    check_coords,
    register_pe,
)
from calliper_pipeline.model.encodings.multiscale import geometric_wavelengths

MAX_RADIUS_RAD = 1.0  # coarsest scale: the unit sphere


class Sphere2VecEncoding(PositionalEncoding):
    """Common machinery: scaled angles at S scales, then per-scale terms from :meth:`terms`.

    Args:
        min_radius_deg: finest scale ``r_min`` in degrees (0 < r_min <= 1 rad = 57.3 deg).
        frequency_num: number of scales S.
    """

    input_space: ClassVar[InputSpace] = "wgs84"
    terms_per_scale: ClassVar[int]
    inv_radius64: Tensor  # (S,) 1/rad, float64

    def __init__(self, min_radius_deg: float = 0.001, frequency_num: int = 32):
        super().__init__()
        if not 0 < math.radians(min_radius_deg) <= MAX_RADIUS_RAD:
            raise ConfigError(
                f"min_radius_deg must be in (0, {math.degrees(MAX_RADIUS_RAD):.4g}], "
                f"got {min_radius_deg}"
            )
        self._radii_rad = geometric_wavelengths(
            math.radians(min_radius_deg), MAX_RADIUS_RAD, frequency_num
        )
        self.out_dim = self.terms_per_scale * frequency_num
        self._register_constants()

    @classmethod
    def from_config(cls, cfg: EncoderConfig, centre_m: tuple[float, float] = (0.0, 0.0)) -> Self:
        """Build from ``cfg.min_radius_deg`` and ``cfg.frequency_num``; ``centre_m`` is unused."""
        return cls(cfg.min_radius_deg, cfg.frequency_num)

    @property
    def radii_rad(self) -> tuple[float, ...]:
        """The S scales ``r_s`` in radians, finest first."""
        return tuple(float(r) for r in self._radii_rad)

    def _constants(self) -> dict[str, Tensor]:
        return {"inv_radius64": torch.tensor(1.0 / self._radii_rad, dtype=torch.float64)}

    def extra_repr(self) -> str:
        r = self._radii_rad
        return f"name={self.name!r}, scales={len(r)}, r_rad=[{r[0]:.4g}, {r[-1]:.4g}]"

    def terms(self, lon: Tensor, lat: Tensor, lon_s: Tensor, lat_s: Tensor) -> list[Tensor]:
        """The per-scale terms, each (..., S).

        Args:
            lon: (..., 1) longitude, radians.
            lat: (..., 1) latitude, radians.
            lon_s: (..., S) ``lon / r_s``.
            lat_s: (..., S) ``lat / r_s``.
        """
        raise NotImplementedError

    def forward(self, coords: Tensor) -> Tensor:
        """(N, 2) (lon, lat) degrees -> (N, terms_per_scale * S), dtype of ``coords``."""
        check_coords(coords)
        rad = torch.deg2rad(coords.to(torch.float64))
        lon, lat = rad[..., 0:1], rad[..., 1:2]
        inv = self.inv_radius64
        terms = self.terms(lon, lat, lon * inv, lat * inv)
        return torch.stack(terms, dim=-1).flatten(-2).to(coords.dtype)


@register_pe("spherec")
class SphereC(Sphere2VecEncoding):
    """sphereC: ``sin(phi_s), cos(phi_s) cos(lambda_s), cos(phi_s) sin(lambda_s)``: 3 S."""

    terms_per_scale = 3

    def terms(self, lon: Tensor, lat: Tensor, lon_s: Tensor, lat_s: Tensor) -> list[Tensor]:
        cos_lat_s = torch.cos(lat_s)
        return [torch.sin(lat_s), cos_lat_s * torch.cos(lon_s), cos_lat_s * torch.sin(lon_s)]


@register_pe("spherec+")
class SphereCPlus(Sphere2VecEncoding):
    """sphereC+ (sphereC plus grid terms): ``sin phi_s, cos phi_s, sin lambda_s, cos lambda_s,
    cos phi_s cos lambda_s, cos phi_s sin lambda_s``: 6 S."""

    terms_per_scale = 6

    def terms(self, lon: Tensor, lat: Tensor, lon_s: Tensor, lat_s: Tensor) -> list[Tensor]:
        sin_lat_s, cos_lat_s = torch.sin(lat_s), torch.cos(lat_s)
        sin_lon_s, cos_lon_s = torch.sin(lon_s), torch.cos(lon_s)
        return [
            sin_lat_s,
            cos_lat_s,
            sin_lon_s,
            cos_lon_s,
            cos_lat_s * cos_lon_s,
            cos_lat_s * sin_lon_s,
        ]


@register_pe("spherem")
class SphereM(Sphere2VecEncoding):
    """sphereM (one angle scaled per product): ``sin phi_s, cos phi_s cos lambda,
    cos phi cos lambda_s, cos phi_s sin lambda, cos phi sin lambda_s``: 5 S."""

    terms_per_scale = 5

    def terms(self, lon: Tensor, lat: Tensor, lon_s: Tensor, lat_s: Tensor) -> list[Tensor]:
        cos_lat, cos_lat_s = torch.cos(lat), torch.cos(lat_s)
        return [
            torch.sin(lat_s),
            cos_lat_s * torch.cos(lon),
            cos_lat * torch.cos(lon_s),
            cos_lat_s * torch.sin(lon),
            cos_lat * torch.sin(lon_s),
        ]


@register_pe("spherem+")
class SphereMPlus(Sphere2VecEncoding):
    """sphereM+ (sphereM plus grid terms): 8 S features.

    Per scale: ``sin phi_s, cos phi_s, sin lambda_s, cos lambda_s, cos phi_s cos lambda,
    cos phi cos lambda_s, cos phi_s sin lambda, cos phi sin lambda_s``.
    """

    terms_per_scale = 8

    def terms(self, lon: Tensor, lat: Tensor, lon_s: Tensor, lat_s: Tensor) -> list[Tensor]:
        cos_lat, cos_lat_s = torch.cos(lat), torch.cos(lat_s)
        sin_lon_s, cos_lon_s = torch.sin(lon_s), torch.cos(lon_s)
        return [
            torch.sin(lat_s),
            cos_lat_s,
            sin_lon_s,
            cos_lon_s,
            cos_lat_s * torch.cos(lon),
            cos_lat * cos_lon_s,
            cos_lat_s * torch.sin(lon),
            cos_lat * sin_lon_s,
        ]
