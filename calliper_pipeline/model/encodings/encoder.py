"""The location encoder (positional encoding, then network) and its builders."""

from __future__ import annotations

from torch import Tensor, nn

from calliper_pipeline.config import EncoderConfig
from calliper_pipeline.errors import ConfigError
from calliper_pipeline.model.encodings.base import (
    NETWORK_REGISTRY,
    PE_REGISTRY,
    InputSpace,
    Network,
    PositionalEncoding,
    lookup,
)


class LocationEncoder(nn.Module):
    """``net(pe(coords))``: coordinates (N, 2) -> embeddings (N, embed_dim), not normalised.

    Args:
        pe: the positional encoding; its ``input_space`` says what ``coords`` are.
        net: the network; ``net.in_dim`` must equal ``pe.out_dim``.
    """

    def __init__(self, pe: PositionalEncoding, net: Network):
        super().__init__()
        if net.in_dim != pe.out_dim:
            raise ConfigError(
                f"network {net.name!r} takes {net.in_dim} features but positional encoding "
                f"{pe.name!r} gives {pe.out_dim}"
            )
        self.pe = pe
        self.net = net
        self.out_dim = net.out_dim

    @property
    def input_space(self) -> InputSpace:
        """``"metric"``: centred metres in the city's metric CRS; ``"wgs84"``: (lon, lat) deg."""
        return self.pe.input_space

    def forward(self, coords: Tensor) -> Tensor:
        """(N, 2) coordinates in ``input_space`` -> (N, out_dim) embeddings."""
        return self.net(self.pe(coords))


def build_positional_encoding(
    cfg: EncoderConfig, centre_m: tuple[float, float] = (0.0, 0.0)
) -> PositionalEncoding:
    """The positional encoding named ``cfg.pe``.

    Args:
        cfg: encoder configuration.
        centre_m: city centre (x, y) in metres of the metric CRS, float64; the metric
            encodings expect input centred on it (ignored by the lon/lat encodings).

    Raises:
        ConfigError: unknown name (the message lists the known ones) or invalid parameters.
    """
    return lookup(PE_REGISTRY, "positional encoding", cfg.pe).from_config(cfg, centre_m)


def build_network(cfg: EncoderConfig, in_dim: int) -> Network:
    """The network named ``cfg.network`` for ``in_dim`` input features.

    Raises:
        ConfigError: unknown name (the message lists the known ones) or invalid parameters.
    """
    return lookup(NETWORK_REGISTRY, "network", cfg.network).from_config(cfg, in_dim)


def build_location_encoder(
    cfg: EncoderConfig, centre_m: tuple[float, float] = (0.0, 0.0)
) -> LocationEncoder:
    """Positional encoding ``cfg.pe`` followed by network ``cfg.network``.

    Args:
        cfg: encoder configuration.
        centre_m: city centre (x, y) in metres, float64 (see :func:`build_positional_encoding`).
    """
    pe = build_positional_encoding(cfg, centre_m)
    return LocationEncoder(pe, build_network(cfg, pe.out_dim))
