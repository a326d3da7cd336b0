"""Networks: the paper's FCNet parameter count and key names, gradients, dropout, SIREN init."""

from __future__ import annotations

import math

import pytest
import torch

from calliper_pipeline.config import EncoderConfig
from calliper_pipeline.errors import ConfigError
from calliper_pipeline.model.encodings import (
    NETWORK_REGISTRY,
    build_location_encoder,
    build_network,
)
from calliper_pipeline.model.encodings.networks import FCNet, ResLayer, SineLayer, Siren


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_fcnet_parameter_count_by_hand() -> None:
    net = build_network(EncoderConfig(), in_dim=128)  # paper: 128 -> 256, 4 blocks -> 128
    first = 128 * 256 + 256
    block = 2 * (256 * 256 + 256)
    last = 256 * 128  # no bias
    assert n_params(net) == first + 4 * block + last == 592_128


def test_fcnet_keys_match_the_authors_checkpoint() -> None:
    keys = set(FCNet(128, 256, 128).state_dict())
    authors = {"feats.0.weight", "feats.0.bias", "class_emb.weight"}
    for i in range(2, 6):
        authors |= {f"feats.{i}.w{j}.{p}" for j in (1, 2) for p in ("weight", "bias")}
    assert keys == authors


def test_fcnet_block_is_residual() -> None:
    net = FCNet(4, 8, 3, num_layers=1).eval()
    block = net.feats[2]
    assert isinstance(block, ResLayer)
    x = torch.randn(5, 8)
    expected = x + torch.relu(block.w2(torch.relu(block.w1(x))))
    assert torch.equal(block(x), expected)


def test_mlp_and_siren_layer_counts() -> None:
    cfg = EncoderConfig(network="mlp", hidden_dim=16, num_layers=3, embed_dim=8)
    mlp = build_network(cfg, in_dim=4)
    linears = [m for m in mlp.modules() if isinstance(m, torch.nn.Linear)]
    assert [tuple(lin.weight.shape) for lin in linears] == [(16, 4), (16, 16), (16, 16), (8, 16)]
    siren_cfg = EncoderConfig(network="siren", hidden_dim=16, num_layers=3, embed_dim=8)
    siren = build_network(siren_cfg, in_dim=4)
    assert isinstance(siren, Siren) and len(siren.layers) == 3


def test_siren_standard_initialisation() -> None:
    torch.manual_seed(0)
    net = Siren(in_dim=128, hidden_dim=256, out_dim=128, num_layers=3)
    first, second = net.layers[0], net.layers[1]
    assert isinstance(first, SineLayer) and isinstance(second, SineLayer)
    assert first.w0 == 30.0 and second.w0 == 1.0
    assert first.linear.weight.abs().max() <= 1 / 128
    bound = math.sqrt(6 / 256)
    assert second.linear.weight.abs().max() <= bound
    assert second.linear.weight.abs().max() > 0.9 * bound  # uniform over the whole range
    x = torch.rand(3, 128)
    expected = torch.sin(30.0 * first.linear(x))
    assert torch.equal(first.eval()(x), expected)


@pytest.mark.parametrize("network", sorted(NETWORK_REGISTRY))
def test_gradients_reach_every_parameter(network: str) -> None:
    torch.manual_seed(0)
    cfg = EncoderConfig(network=network, hidden_dim=32, num_layers=2, dropout=0.1)
    encoder = build_location_encoder(cfg, centre_m=(530_000.0, 180_000.0))
    coords = (torch.rand(16, 2) - 0.5) * 20_000.0
    encoder(coords).pow(2).sum().backward()
    for name, p in encoder.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("network", sorted(NETWORK_REGISTRY))
def test_dropout_only_in_train_mode(network: str) -> None:
    torch.manual_seed(0)
    cfg = EncoderConfig(network=network, dropout=0.5, frequency_num=8, hidden_dim=32)
    encoder = build_location_encoder(cfg)
    coords = (torch.rand(8, 2) - 0.5) * 20_000.0
    encoder.eval()
    assert torch.equal(encoder(coords), encoder(coords))
    encoder.train()
    assert not torch.equal(encoder(coords), encoder(coords))


@pytest.mark.parametrize(
    "cfg",
    [EncoderConfig(dropout=1.0), EncoderConfig(num_layers=0), EncoderConfig(hidden_dim=0)],
)
def test_invalid_network_configs_raise(cfg: EncoderConfig) -> None:
    with pytest.raises(ConfigError):
        build_network(cfg, in_dim=128)
