"""Direct encoding: the centred metric coordinates themselves, scaled to O(1)."""

from __future__ import annotations

from typing import ClassVar, Self

from torch import Tensor

from calliper_pipeline.config import EncoderConfig
from calliper_pipeline.errors import ConfigError
from calliper_pipeline.model.encodings.base import (
    InputSpace,
    PositionalEncoding,
    check_coords,
    register_pe,
)


@register_pe("direct")
class DirectEncoding(PositionalEncoding):
    """``(x - centre_x, y - centre_y) / scale_m``: 2 features, unitless.

    ``scale_m`` is ``cfg.max_lambda_m`` (10 km by default), so a city of radius ~30 km gives
    inputs in about [-3, 3] and the network sees O(1) values. Unlike grid and theory this
    encoding depends on the centre by construction (it is a baseline, not a reproduction of the
    authors' ``direct``, which rescales lon/lat degrees to radians minus pi).

    Args:
        scale_m: divisor in metres (> 0).
    """

    input_space: ClassVar[InputSpace] = "metric"

    def __init__(self, scale_m: float = 10_000.0):
        super().__init__()
        if not scale_m > 0:
            raise ConfigError(f"direct encoding needs scale_m > 0, got {scale_m}")
        self.scale_m = float(scale_m)
        self.out_dim = 2

    @classmethod
    def from_config(cls, cfg: EncoderConfig, centre_m: tuple[float, float] = (0.0, 0.0)) -> Self:
        """Scale by ``cfg.max_lambda_m``; ``centre_m`` is unused (input is already centred)."""
        return cls(cfg.max_lambda_m)

    def extra_repr(self) -> str:
        return f"scale_m={self.scale_m:g}"

    def forward(self, coords: Tensor) -> Tensor:
        """(N, 2) centred metres -> (N, 2) unitless, same dtype."""
        check_coords(coords)
        return coords / self.scale_m
