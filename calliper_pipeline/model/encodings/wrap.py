"""Wrap encoding (Mac Aodha et al. 2019, as in SatCLIP): sin/cos of longitude and latitude."""

from __future__ import annotations

from typing import ClassVar, Self

import torch
from torch import Tensor

from calliper_pipeline.config import EncoderConfig
from calliper_pipeline.model.encodings.base import (
    InputSpace,
    PositionalEncoding,
    check_coords,
    compute_dtype,
    register_pe,
)


@register_pe("wrap")
class WrapEncoding(PositionalEncoding):
    """``(cos lon, sin lon, cos lat, sin lat)`` with lon, lat in radians: 4 features.

    The order and content are SatCLIP's ``Wrap`` exactly (its ``"wrap"`` encoding, which CaLLiPer's
    code reuses). Longitude wraps continuously across the antimeridian; latitude is only
    ``(cos, sin)`` of [-pi/2, pi/2], which is injective there.
    """

    input_space: ClassVar[InputSpace] = "wgs84"

    def __init__(self) -> None:
        super().__init__()
        self.out_dim = 4

    @classmethod
    def from_config(cls, cfg: EncoderConfig, centre_m: tuple[float, float] = (0.0, 0.0)) -> Self:
        """No parameters; ``cfg`` and ``centre_m`` are unused."""
        return cls()

    def forward(self, coords: Tensor) -> Tensor:
        """(N, 2) (lon, lat) degrees -> (N, 4), dtype of ``coords``."""
        check_coords(coords)
        rad = torch.deg2rad(coords.to(compute_dtype(coords)))
        lon, lat = rad[..., 0], rad[..., 1]
        out = torch.stack((torch.cos(lon), torch.sin(lon), torch.cos(lat), torch.sin(lat)), -1)
        return out.to(coords.dtype)
