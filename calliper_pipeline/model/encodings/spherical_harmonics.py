"""Real spherical harmonics of (lon, lat) up to degree L - 1 (SatCLIP's location encoding).

Angles follow SatCLIP: polar angle ``theta = radians(lat + 90)`` (0 at the south pole) and
azimuth ``phi = radians(lon + 180)``. For l = 0..L-1 and m = -l..l (that order, L*L features)

    Y_l^0  = N_l^0 P_l^0(cos theta)
    Y_l^m  = sqrt(2) N_l^m P_l^m(cos theta) cos(m phi)      (m > 0)
    Y_l^-m = sqrt(2) N_l^m P_l^m(cos theta) sin(m phi)      (m > 0)

with ``N_l^m = sqrt((2l + 1) / (4 pi) * (l - m)! / (l + m)!)`` and ``P_l^m`` the associated
Legendre functions *without* the Condon-Shortley phase. These are orthonormal on the unit
sphere: the integral of ``Y_a Y_b`` over the sphere (area 4 pi) is ``delta_ab``. They equal
SatCLIP's default "analytic" harmonics except for m = 0, where SatCLIP's generated code has a
normalisation slip (``sqrt((2l+1)/4 * pi)`` instead of ``sqrt((2l+1)/(4 pi))``), so its m = 0
terms are ours times pi.

Computation: fully normalised ``P_l^m`` by the standard stable three-term recurrence in l,
vectorised over all m at once (L steps, each on an (N, L) tensor), in float64; the result is cast
to the input dtype. No factorials are formed, so large L does not overflow.
"""

from __future__ import annotations

import math
from typing import ClassVar, Self

import numpy as np
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


def _recurrence_coefficients(degree: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coefficients of ``Pbar_l = A_l * x * Pbar_{l-1} - B_l * Pbar_{l-2} + [m == l] * diag``.

    Returns:
        a, b: (L, L) arrays indexed [l, m]; diag: (L,) ``Pbar_m^m / sin(theta)^m``.
    """
    a = np.zeros((degree, degree))
    b = np.zeros((degree, degree))
    for l in range(degree):  # noqa: E741 (l is the standard name of the degree)
        for m in range(l):
            if m == l - 1:
                a[l, m] = math.sqrt(2 * m + 3)
            else:
                a[l, m] = math.sqrt((4 * l * l - 1) / (l * l - m * m))
                b[l, m] = a[l, m] * math.sqrt(((l - 1) ** 2 - m * m) / (4 * (l - 1) ** 2 - 1))
    diag = np.empty(degree)
    diag[0] = math.sqrt(1.0 / (4.0 * math.pi))
    for m in range(1, degree):
        diag[m] = diag[m - 1] * math.sqrt((2 * m + 1) / (2 * m))
    return a, b, diag


def _feature_layout(degree: int) -> tuple[np.ndarray, np.ndarray]:
    """Index into the flattened (L, 2L) [cos-part | sin-part] table, and per-column weights.

    Feature ``l*l + l + m`` is column ``m`` of the cos part (m >= 0) or ``L + |m|`` of the sin
    part (m < 0) in row l. Weights: 1 for m = 0, sqrt(2) otherwise.
    """
    index = []
    for l in range(degree):  # noqa: E741
        for m in range(-l, l + 1):
            index.append(l * 2 * degree + (m if m >= 0 else degree - m))
    weight = np.full(2 * degree, math.sqrt(2.0))
    weight[0] = 1.0
    return np.asarray(index, dtype=np.int64), weight


@register_pe("sphericalharmonics")
class SphericalHarmonics(PositionalEncoding):
    """Real, orthonormal spherical harmonics of degree l < L: ``L * L`` features.

    Args:
        legendre_polys: L, the number of degrees (>= 1); 10 gives 100 features.
    """

    input_space: ClassVar[InputSpace] = "wgs84"
    coef_a: Tensor  # (L, L) recurrence coefficients [l, m], float64
    coef_b: Tensor
    diag: Tensor  # (L,) Pbar_m^m / sin(theta)^m
    orders: Tensor  # (L,) m = 0..L-1 as float64
    column_weight: Tensor  # (2L,) 1 or sqrt(2)
    feature_index: Tensor  # (L*L,) int64

    def __init__(self, legendre_polys: int = 10):
        super().__init__()
        if legendre_polys < 1:
            raise ConfigError(f"legendre_polys must be >= 1, got {legendre_polys}")
        self.degree = int(legendre_polys)
        self.out_dim = self.degree * self.degree
        self._register_constants()

    @classmethod
    def from_config(cls, cfg: EncoderConfig, centre_m: tuple[float, float] = (0.0, 0.0)) -> Self:
        """Build from ``cfg.legendre_polys``; ``centre_m`` is unused."""
        return cls(cfg.legendre_polys)

    def _constants(self) -> dict[str, Tensor]:
        a, b, diag = _recurrence_coefficients(self.degree)
        index, weight = _feature_layout(self.degree)
        f64 = torch.float64
        return {
            "coef_a": torch.tensor(a, dtype=f64),
            "coef_b": torch.tensor(b, dtype=f64),
            "diag": torch.tensor(diag, dtype=f64),
            "orders": torch.arange(self.degree, dtype=f64),
            "column_weight": torch.tensor(weight, dtype=f64),
            "feature_index": torch.tensor(index),
        }

    def extra_repr(self) -> str:
        return f"legendre_polys={self.degree}, out_dim={self.out_dim}"

    def legendre(self, x: Tensor, s: Tensor) -> Tensor:
        """Fully normalised ``N_l^m P_l^m``, (..., L, L) indexed [l, m] (zero for m > l).

        Args:
            x: (..., 1) ``cos(theta)``.
            s: (..., 1) ``sin(theta) >= 0``.
        """
        sectoral = self.diag * s**self.orders  # (..., L): Pbar_m^m
        previous = torch.zeros_like(sectoral)
        before = torch.zeros_like(sectoral)
        rows = []
        for l in range(self.degree):  # noqa: E741
            row = self.coef_a[l] * x * previous - self.coef_b[l] * before
            row = row + torch.where(self.orders == l, sectoral, torch.zeros_like(sectoral))
            rows.append(row)
            before, previous = previous, row
        return torch.stack(rows, dim=-2)

    def forward(self, coords: Tensor) -> Tensor:
        """(N, 2) (lon, lat) degrees -> (N, L*L), dtype of ``coords``."""
        check_coords(coords)
        rad = torch.deg2rad(coords.to(torch.float64))
        azimuth = rad[..., 0:1] + math.pi  # phi = lon + 180 deg
        lat = rad[..., 1:2]
        # theta = lat + 90 deg: cos(theta) = -sin(lat), sin(theta) = cos(lat) >= 0
        p = self.legendre(-torch.sin(lat), torch.cos(lat))  # (..., L, L)
        m_phi = (azimuth * self.orders).unsqueeze(-2)  # (..., 1, L)
        table = torch.cat((p * torch.cos(m_phi), p * torch.sin(m_phi)), dim=-1)  # (..., L, 2L)
        table = table * self.column_weight
        features = table.flatten(-2).index_select(-1, self.feature_index)
        return features.to(coords.dtype)
