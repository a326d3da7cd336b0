"""Networks that map positional features to location embeddings: fcnet, mlp, siren.

All take ``(..., in_dim)`` features and return ``(..., out_dim)`` embeddings (not normalised).
"""

from __future__ import annotations

import math
from typing import Final, Self

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from calliper_pipeline.config import EncoderConfig
from calliper_pipeline.errors import ConfigError
from calliper_pipeline.model.encodings.base import Network, register_network

_MASK53: Final = (1 << 53) - 1
_exact_mask_ok: bool | None = None  # None: not checked yet in this process


def _keep_from_bits(bits: Tensor, keep_prob: float) -> Tensor:
    """In place: int64 random bits -> int64 1 where ``u < keep_prob``, else 0.

    ``u`` is the float64 uniform torch's CPU ``bernoulli_`` makes of the same 64 bits,
    ``(r & (2**53 - 1)) / 2**53`` exactly, so ``u < q``  <=>  ``(r & mask) < ceil(q * 2**53)``.
    """
    return bits.bitwise_and_(_MASK53).lt_(math.ceil(keep_prob * 2.0**53))


def _exact_mask_supported() -> bool:
    """Whether the masks below reproduce ``bernoulli_`` in this torch build.

    Checked once per process on private generators (the global RNG is not touched).
    """
    global _exact_mask_ok
    if _exact_mask_ok is None:
        shape = (97, 131)
        ok = True
        for q in (0.5, 0.9, 0.3):
            ref = torch.empty(shape).bernoulli_(q, generator=torch.Generator().manual_seed(7))
            gen = torch.Generator().manual_seed(7)
            bits = torch.empty(shape, dtype=torch.int64).random_(generator=gen)
            ok = ok and torch.equal(ref, _keep_from_bits(bits, q).to(ref.dtype))
        _exact_mask_ok = ok
    return _exact_mask_ok


def dropout_keep_mask(shape: torch.Size | tuple[int, ...], keep_prob: float) -> Tensor:
    """CPU float32 keep-mask (1 or 0) with exactly the draws of
    ``torch.empty(shape).bernoulli_(keep_prob)``, and the same generator state after.

    torch's CPU ``bernoulli_`` turns each element's 64 random bits into a float64 uniform one
    element at a time (~12 ns each); drawing the same bits with ``random_()`` and comparing
    them as integers gives the same mask about three times faster. Where that equivalence does
    not hold in this torch build (checked once per process) ``bernoulli_`` itself is used.
    """
    if _exact_mask_supported():
        bits = torch.empty(shape, dtype=torch.int64).random_()
        return _keep_from_bits(bits, keep_prob).to(torch.float32)
    return torch.empty(shape).bernoulli_(keep_prob)


def fast_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """``F.dropout(x, p, training)``: the same random draws and the same values, faster on CPU.

    ``F.dropout`` on CPU draws ``bernoulli_(1 - p)``, divides the mask by ``1 - p`` and
    multiplies; this draws the same mask with :func:`dropout_keep_mask` and multiplies by the
    same float32 ``1 / (1 - p)``. On CUDA (a fused kernel with its own RNG), under autocast,
    or for other dtypes it is ``F.dropout`` itself.
    """
    if not training or p == 0.0:
        return x
    cpu_float = x.device.type == "cpu" and x.dtype == torch.float32
    if not cpu_float or p >= 1.0 or torch.is_autocast_enabled("cpu"):
        return F.dropout(x, p, training)
    scale = torch.ones((), dtype=x.dtype).div_(1.0 - p)  # float32 1 / (1 - p), as F.dropout
    return x * dropout_keep_mask(x.shape, 1.0 - p).mul_(scale)


def _check(in_dim: int, hidden_dim: int, out_dim: int, num_layers: int, dropout: float) -> None:
    if min(in_dim, hidden_dim, out_dim) < 1:
        raise ConfigError(f"dimensions must be >= 1, got {in_dim}, {hidden_dim}, {out_dim}")
    if num_layers < 1:
        raise ConfigError(f"num_layers must be >= 1, got {num_layers}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout}")


class ResLayer(nn.Module):
    """FCNet residual block: ``x + ReLU(W2(Dropout(ReLU(W1 x))))``, width unchanged."""

    def __init__(self, width: int, dropout: float = 0.5):
        super().__init__()
        self.w1 = nn.Linear(width, width)
        self.w2 = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """(..., width) -> (..., width)."""
        # In-place ReLUs on the fresh Linear outputs (autograd keeps the result it needs) and
        # the exact, faster CPU dropout: the same values as the plain expression, fewer passes.
        h = fast_dropout(self.w1(x).relu_(), self.dropout.p, self.training)
        return x + self.w2(h).relu_()


@register_network("fcnet")
class FCNet(Network):
    """The paper's network (SatCLIP's FCNet): ``Linear(in, hidden) + ReLU``, ``num_layers``
    residual blocks, then ``Linear(hidden, out, bias=False)``.

    Parameter names mirror the authors' (``feats.0``, ``feats.2..``, ``w1``/``w2``,
    ``class_emb``), so their checkpoint's ``nnet.*`` tensors load into ``net.*`` unchanged.
    Parameters: ``(in + 1) * hidden + num_layers * 2 * (hidden + 1) * hidden + hidden * out``
    (592,128 for 128 -> 256 x 4 blocks -> 128).

    Args:
        in_dim: input features.
        hidden_dim: width of the residual stack.
        out_dim: embedding size.
        num_layers: number of residual blocks (4 in the paper).
        dropout: dropout probability inside each block (0.5 in the paper).
    """

    def __init__(
        self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 4, dropout: float = 0.5
    ):
        super().__init__()
        _check(in_dim, hidden_dim, out_dim, num_layers, dropout)
        self.in_dim, self.out_dim = in_dim, out_dim
        blocks = [ResLayer(hidden_dim, dropout) for _ in range(num_layers)]
        self.feats = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), *blocks)
        self.class_emb = nn.Linear(hidden_dim, out_dim, bias=False)

    @classmethod
    def from_config(cls, cfg: EncoderConfig, in_dim: int) -> Self:
        """``hidden_dim``, ``embed_dim``, ``num_layers`` blocks and ``dropout`` from ``cfg``."""
        return cls(in_dim, cfg.hidden_dim, cfg.embed_dim, cfg.num_layers, cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        """(..., in_dim) -> (..., out_dim)."""
        return self.class_emb(self.feats(x))


@register_network("mlp")
class MLP(Network):
    """Plain MLP: ``num_layers`` hidden layers ``Linear -> ReLU -> Dropout`` (the first maps
    ``in -> hidden``, the rest ``hidden -> hidden``), then ``Linear(hidden, out)``.

    Args:
        in_dim: input features.
        hidden_dim: hidden width.
        out_dim: embedding size.
        num_layers: number of hidden layers.
        dropout: dropout probability after each hidden activation.
    """

    def __init__(
        self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 4, dropout: float = 0.5
    ):
        super().__init__()
        _check(in_dim, hidden_dim, out_dim, num_layers, dropout)
        self.in_dim, self.out_dim = in_dim, out_dim
        layers: list[nn.Module] = []
        for i in range(num_layers):
            layers += [nn.Linear(in_dim if i == 0 else hidden_dim, hidden_dim), nn.ReLU()]
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(hidden_dim, out_dim))
        self.layers = nn.Sequential(*layers)

    @classmethod
    def from_config(cls, cfg: EncoderConfig, in_dim: int) -> Self:
        """``hidden_dim``, ``embed_dim``, ``num_layers`` and ``dropout`` from ``cfg``."""
        return cls(in_dim, cfg.hidden_dim, cfg.embed_dim, cfg.num_layers, cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        """(..., in_dim) -> (..., out_dim)."""
        return self.layers(x)


class SineLayer(nn.Module):
    """``sin(w0 * Dropout(W x + b))`` with SIREN's initialisation (Sitzmann et al. 2020).

    First layer: W, b ~ U(-1/in, 1/in); later layers: U(-sqrt(6/in)/w0, sqrt(6/in)/w0).
    """

    def __init__(self, in_dim: int, out_dim: int, w0: float, is_first: bool, dropout: float):
        super().__init__()
        self.w0 = float(w0)
        self.linear = nn.Linear(in_dim, out_dim)
        self.dropout = nn.Dropout(dropout)
        bound = 1.0 / in_dim if is_first else math.sqrt(6.0 / in_dim) / self.w0
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound)
            self.linear.bias.uniform_(-bound, bound)

    def extra_repr(self) -> str:
        return f"w0={self.w0:g}"

    def forward(self, x: Tensor) -> Tensor:
        """(..., in_dim) -> (..., out_dim) in [-1, 1]."""
        return torch.sin(self.w0 * self.dropout(self.linear(x)))


@register_network("siren")
class Siren(Network):
    """SIREN: ``num_layers`` sine layers (w0 = 30 on the first, 1 after), then a linear layer.

    The final ``Linear(hidden, out)`` has the hidden-layer init (U(+-sqrt(6/hidden))). Dropout
    is applied before each sine as in SatCLIP's SirenNet (``cfg.dropout``; 0 turns it off).

    Args:
        in_dim: input features.
        hidden_dim: hidden width.
        out_dim: embedding size.
        num_layers: number of sine layers.
        dropout: dropout probability before each sine.
        w0_initial: frequency factor of the first layer.
        w0: frequency factor of the later layers.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int = 4,
        dropout: float = 0.0,
        w0_initial: float = 30.0,
        w0: float = 1.0,
    ):
        super().__init__()
        _check(in_dim, hidden_dim, out_dim, num_layers, dropout)
        self.in_dim, self.out_dim = in_dim, out_dim
        self.layers = nn.Sequential(
            *(
                SineLayer(
                    in_dim if i == 0 else hidden_dim,
                    hidden_dim,
                    w0=w0_initial if i == 0 else w0,
                    is_first=i == 0,
                    dropout=dropout,
                )
                for i in range(num_layers)
            )
        )
        self.last = nn.Linear(hidden_dim, out_dim)
        bound = math.sqrt(6.0 / hidden_dim)
        with torch.no_grad():
            self.last.weight.uniform_(-bound, bound)
            self.last.bias.uniform_(-bound, bound)

    @classmethod
    def from_config(cls, cfg: EncoderConfig, in_dim: int) -> Self:
        """``hidden_dim``, ``embed_dim``, ``num_layers`` and ``dropout`` from ``cfg``."""
        return cls(in_dim, cfg.hidden_dim, cfg.embed_dim, cfg.num_layers, cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        """(..., in_dim) -> (..., out_dim)."""
        return self.last(self.layers(x))
