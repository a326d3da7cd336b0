"""Registries, builders and shapes of every positional encoding and network."""

from __future__ import annotations

import pytest
import torch

from calliper_pipeline.config import EncoderConfig
from calliper_pipeline.errors import ConfigError
from calliper_pipeline.model.encodings import (
    NETWORK_REGISTRY,
    PE_REGISTRY,
    LocationEncoder,
    build_location_encoder,
    build_network,
    build_positional_encoding,
)
from calliper_pipeline.model.encodings.grid import GridEncoding
from calliper_pipeline.model.encodings.networks import FCNet

# out_dim with the default config (S = 32 scales, L = 10 degrees)
EXPECTED_PE = {
    "grid": ("metric", 128),
    "theory": ("metric", 192),
    "direct": ("metric", 2),
    "spherec": ("wgs84", 96),
    "spherec+": ("wgs84", 192),
    "spherem": ("wgs84", 160),
    "spherem+": ("wgs84", 256),
    "sphericalharmonics": ("wgs84", 100),
    "wrap": ("wgs84", 4),
}
CENTRE = (530_000.0, 180_000.0)


def sample_coords(input_space: str, n: int = 7) -> torch.Tensor:
    """Centred metres for metric encodings, London-ish (lon, lat) degrees otherwise."""
    g = torch.Generator().manual_seed(0)
    if input_space == "metric":
        return (torch.rand(n, 2, generator=g) - 0.5) * 50_000.0
    return torch.tensor([-0.13, 51.5]) + (torch.rand(n, 2, generator=g) - 0.5) * 0.6


def test_registries_list_every_name() -> None:
    assert set(PE_REGISTRY) == set(EXPECTED_PE)
    assert set(NETWORK_REGISTRY) == {"fcnet", "mlp", "siren"}


@pytest.mark.parametrize("name", sorted(EXPECTED_PE))
def test_every_encoding_shape_dtype_and_space(name: str) -> None:
    pe = build_positional_encoding(EncoderConfig(pe=name), centre_m=CENTRE)
    space, dim = EXPECTED_PE[name]
    assert pe.name == name and pe.input_space == space and pe.out_dim == dim
    coords = sample_coords(space)
    out = pe(coords)
    assert out.shape == (7, dim) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert pe(coords.double()).dtype == torch.float64
    assert pe(coords.reshape(7, 1, 2)).shape == (7, 1, dim)  # leading dims are kept
    assert pe(coords[:0]).shape == (0, dim)


@pytest.mark.parametrize("network", sorted(NETWORK_REGISTRY))
@pytest.mark.parametrize("name", sorted(EXPECTED_PE))
def test_every_encoder_combination_builds_and_runs(name: str, network: str) -> None:
    cfg = EncoderConfig(pe=name, network=network, frequency_num=4, hidden_dim=16, num_layers=2)
    encoder = build_location_encoder(cfg, centre_m=CENTRE)
    assert encoder.input_space == EXPECTED_PE[name][0]
    assert encoder.out_dim == cfg.embed_dim == 128
    out = encoder.eval()(sample_coords(encoder.input_space, 3))
    assert out.shape == (3, 128) and torch.isfinite(out).all()


@pytest.mark.parametrize("network", sorted(NETWORK_REGISTRY))
def test_every_network_shape(network: str) -> None:
    net = build_network(EncoderConfig(network=network, embed_dim=32), in_dim=12)
    assert net.name == network and (net.in_dim, net.out_dim) == (12, 32)
    assert net(torch.randn(5, 12)).shape == (5, 32)


def test_unknown_names_raise_config_error_listing_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown positional encoding 'gird'.*grid.*theory"):
        build_positional_encoding(EncoderConfig(pe="gird"))
    with pytest.raises(ConfigError, match=r"unknown network 'resnet'.*fcnet, mlp, siren"):
        build_network(EncoderConfig(network="resnet"), in_dim=128)
    with pytest.raises(ConfigError):
        build_location_encoder(EncoderConfig(pe="nope"))


def test_mismatched_dimensions_raise() -> None:
    with pytest.raises(ConfigError, match="takes 64 features"):
        LocationEncoder(GridEncoding(), FCNet(64, 16, 8))


def test_encoder_is_pe_then_network() -> None:
    encoder = build_location_encoder(EncoderConfig(), centre_m=CENTRE).eval()
    coords = sample_coords("metric")
    assert torch.equal(encoder(coords), encoder.net(encoder.pe(coords)))
    keys = set(encoder.state_dict())
    assert "pe.centre_m" in keys and "net.class_emb.weight" in keys
    assert not any("table" in k for k in keys)  # derived constants are not saved


def test_state_dict_round_trip() -> None:
    cfg = EncoderConfig(hidden_dim=32)
    source = build_location_encoder(cfg, centre_m=CENTRE).eval()
    target = build_location_encoder(cfg, centre_m=CENTRE).eval()
    target.load_state_dict(source.state_dict())
    coords = sample_coords("metric")
    assert torch.equal(target(coords), source(coords))
