"""Data-parallel training over several processes (gloo on CPU, NCCL on CUDA), torchrun-style.

Each process holds every training array (a city's points fit in memory many times over), draws
the same seeded permutation and takes its contiguous share of each global batch. The location
and text embeddings of the shares are gathered with a *differentiable* all-gather
(``torch.distributed.nn.functional.all_gather``), so every process scores the whole global
batch: every location sees every other process's locations as negatives, exactly as in one
process with the same global batch. The gradients are then averaged over processes.

Why the result equals single-process training: every process computes the same global loss L.
The all-gather's backward sums the gradient of L over processes, so process r's parameters
receive ``world * dL/dθ`` through its own rows; quantities computed from replicated inputs (the
text table's projection of an own-text head, the temperatures) receive ``dL/dθ`` once per
process. Averaging over processes then gives exactly ``dL/dθ``. Dropout masks are drawn per
process, so with dropout the runs agree in distribution, and without it up to float rounding
(``tests/unit/training/test_distributed.py`` checks 2 gloo processes against one).

Launch: ``calliper train --nproc N`` starts N workers through ``torch.distributed.run``
(torchrun); a worker started by torchrun (``WORLD_SIZE`` > 1 in its environment) joins the
group in :func:`init_from_env`. Rank 0 alone writes checkpoints, logs and registers the model.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import Tensor

from calliper_pipeline.model.calliper import CalliperModel
from calliper_pipeline.training.batches import Batches

# torch 2.13 marks the autograd all-gather deprecated in favour of a private module; it is the
# public differentiable collective, and works with gloo and NCCL alike
warnings.filterwarnings(
    "ignore", message=r"torch\.distributed\.nn\.functional\.all_gather is deprecated",
    category=FutureWarning,
)  # fmt: skip


@dataclass(frozen=True)
class World:
    """This process's place in the group (``size == 1``: not distributed)."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current() -> World:
    """The initialised process group's rank and size, or the single-process world."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def env_world_size(env: dict[str, str] | None = None) -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 when absent)."""
    return int((env if env is not None else os.environ).get("WORLD_SIZE", "1") or 1)


def init_from_env(device: str) -> World:
    """Join the group torchrun described in the environment (``env://``): NCCL for CUDA,
    gloo for CPU; a no-op outside torchrun or when already joined."""
    if env_world_size() <= 1:
        return World()
    if not dist.is_initialized():
        cuda = device.startswith("cuda")
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")
    return current()


def shares(n: int, world: int) -> list[int]:
    """Sizes of the contiguous shares of an ``n``-item batch (``torch.tensor_split``'s)."""
    base, extra = divmod(n, world)
    return [base + (1 if r < extra else 0) for r in range(world)]


def gather_rows(x: Tensor, sizes: Sequence[int]) -> Tensor:
    """Concatenate every process's rows of ``x`` in rank order, differentiably.

    Shares may differ by one row (``sizes``, the same list on every process): each is padded
    to the largest and the padding is cut off after the gather.
    """
    longest = max(sizes)
    pad = longest - x.shape[0]
    if pad:
        x = torch.cat([x, x.new_zeros((pad, *x.shape[1:]))])
    parts = dist_fn.all_gather(x)
    return torch.cat([p[:k] for p, k in zip(parts, sizes, strict=True)])


class DistributedBatches(Batches):
    """:class:`Batches` whose loss scores a global batch spread over the process group."""

    def __init__(self, base: Batches, world: World):
        self.__dict__.update(base.__dict__)
        self.world = world

    def _local(self, idx: Tensor) -> tuple[Tensor, list[int]]:
        sizes = shares(len(idx), self.world.size)
        start = sum(sizes[: self.world.rank])
        return idx[start : start + sizes[self.world.rank]], sizes

    def loss(self, model: CalliperModel, idx: Tensor) -> Tensor:
        """The global batch ``idx``'s loss, from this process's share of the encodings."""
        if not torch.is_grad_enabled():  # validation: every process scores it alone
            return super().loss(model, idx)
        local, sizes = self._local(idx)
        loc = gather_rows(self.encode(model, local), sizes)
        losses = [self._head_loss(model, h, loc, idx, local, sizes) for h in range(len(self.heads))]
        return losses[0] if len(losses) == 1 else torch.stack(losses).mean()

    def _head_loss(
        self, model: CalliperModel, h: int, loc: Tensor, idx: Tensor, local: Tensor,
        sizes: list[int],
    ) -> Tensor:  # fmt: skip
        head = self.heads[h]
        if head.index is not None and self.grouped:
            # the distinct texts are replicated on every process: no gather needed
            return self.head_loss(model, h, loc, idx)
        proj_head = h if model.heads > 1 else None
        if head.index is not None:
            txt = model.encode_text(self.text_table[head.index[local]], head=proj_head)
        else:
            assert head.weights is not None
            txt = model.encode_text_mixture(head.weights[local], self.text_table, h)
        return self.scored(model, h, loc, gather_rows(txt, sizes), idx)


def average_gradients(model: torch.nn.Module, world: World) -> None:
    """All-reduce (mean) every parameter's gradient over the group, as one flat buffer."""
    if world.size <= 1:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world.size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()
