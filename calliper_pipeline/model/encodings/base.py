"""Base classes and name registries of the location encoders.

A location encoder is a positional encoding (a fixed, parameter-free map from coordinates to
features) followed by a trainable network. Both are looked up by name in a registry filled by
the ``@register_pe(...)`` and ``@register_network(...)`` class decorators, so adding one is
adding a class, never editing an if/elif chain.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar, Literal, Self, TypeVar

import torch
from torch import Tensor, nn

from calliper_pipeline.config import EncoderConfig
from calliper_pipeline.errors import ConfigError, ModelInputError

InputSpace = Literal["metric", "wgs84"]


class PositionalEncoding(nn.Module):
    """A fixed map from 2-D coordinates to features: ``(..., 2) -> (..., out_dim)``.

    Attributes:
        name: the registry name (set by :func:`register_pe`).
        input_space: ``"metric"``: coordinates are *centred* metres in the city's metric CRS,
            ``(x_m - centre_x, y_m - centre_y)``; ``"wgs84"``: ``(lon, lat)`` in degrees.
        out_dim: number of features per point.
    """

    name: ClassVar[str] = ""
    input_space: ClassVar[InputSpace]
    persistent_constants: ClassVar[frozenset[str]] = frozenset()
    out_dim: int

    @classmethod
    def from_config(
        cls, cfg: EncoderConfig, centre_m: tuple[float, float] = (0.0, 0.0)
    ) -> PositionalEncoding:
        """Build the encoding from the encoder config (``centre_m``: metres, float64)."""
        raise NotImplementedError

    def _constants(self) -> dict[str, Tensor]:
        """Fixed tensors of the encoding, built from float64 masters; none by default."""
        return {}

    def _register_constants(self) -> None:
        """Register :meth:`_constants` as buffers (persistent only if named so)."""
        for name, value in self._constants().items():
            self.register_buffer(name, value, persistent=name in self.persistent_constants)

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> Self:
        # Casts (.float(), .half(), .double()) must not round the constants: after any
        # _apply, rebuild them at their intended dtype on the device the buffers moved to.
        super()._apply(fn, recurse)
        constants = self._constants()
        if constants:
            device = next(
                t.device for n, t in self._buffers.items() if n in constants and t is not None
            )
            for name, value in constants.items():
                self._buffers[name] = value.to(device)
        return self

    def forward(self, coords: Tensor) -> Tensor:
        """Encode ``coords`` (N, 2) into features (N, out_dim)."""
        raise NotImplementedError


class Network(nn.Module):
    """A trainable map from features to embeddings: ``(..., in_dim) -> (..., out_dim)``."""

    name: ClassVar[str] = ""
    in_dim: int
    out_dim: int

    @classmethod
    def from_config(cls, cfg: EncoderConfig, in_dim: int) -> Network:
        """Build the network for ``in_dim`` input features from the encoder config."""
        raise NotImplementedError


PE_REGISTRY: dict[str, type[PositionalEncoding]] = {}
NETWORK_REGISTRY: dict[str, type[Network]] = {}

PeT = TypeVar("PeT", bound=PositionalEncoding)
NetT = TypeVar("NetT", bound=Network)
V = TypeVar("V")


def register_pe(name: str) -> Callable[[type[PeT]], type[PeT]]:
    """Class decorator: make a :class:`PositionalEncoding` buildable by ``name``."""

    def decorate(cls: type[PeT]) -> type[PeT]:
        if name in PE_REGISTRY:
            raise ValueError(f"positional encoding {name!r} is registered twice")
        cls.name = name
        PE_REGISTRY[name] = cls
        return cls

    return decorate


def register_network(name: str) -> Callable[[type[NetT]], type[NetT]]:
    """Class decorator: make a :class:`Network` buildable by ``name``."""

    def decorate(cls: type[NetT]) -> type[NetT]:
        if name in NETWORK_REGISTRY:
            raise ValueError(f"network {name!r} is registered twice")
        cls.name = name
        NETWORK_REGISTRY[name] = cls
        return cls

    return decorate


def lookup(registry: Mapping[str, V], kind: str, name: str) -> V:
    """``registry[name]``, or a :class:`ConfigError` that lists the known names."""
    try:
        return registry[name]
    except KeyError:
        known = ", ".join(sorted(registry))
        raise ConfigError(f"unknown {kind} {name!r}; known: {known}") from None


def check_coords(coords: Tensor) -> None:
    """Fail loudly on input that is not a floating tensor of shape (..., 2).

    Only shape and dtype are checked: a check on values would force a device sync per batch.
    """
    if coords.ndim < 1 or coords.shape[-1] != 2:
        raise ModelInputError(f"coordinates must have shape (N, 2), got {tuple(coords.shape)}")
    if not torch.is_floating_point(coords):
        raise ModelInputError(f"coordinates must be floating point, got {coords.dtype}")


def compute_dtype(coords: Tensor) -> torch.dtype:
    """float64 for float64 input, else float32 (half-precision input is upcast)."""
    return torch.float64 if coords.dtype == torch.float64 else torch.float32
