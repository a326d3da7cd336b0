"""Training checkpoints: ``last.pt`` (resumable state) and ``best.pt`` (best model so far).

Both hold only tensors and primitives and are read with ``torch.load(weights_only=True)``:

- ``last.pt``: model and optimizer state, the epoch permutation generator and torch RNG states,
  the history, the best epoch so far and its weights; :func:`load_resume_state` restores them so
  that a resumed run continues exactly as if never stopped.
- ``best.pt``: the best-validation model so far, in :func:`model.calliper.save_model`'s format
  (load it with :func:`model.calliper.load_model`), rewritten at each improvement.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from calliper_pipeline.model.calliper import CalliperModel, save_weights

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"


@dataclass(frozen=True)
class EpochStats:
    """One epoch's figures (losses are mean symmetric InfoNCE over the epoch's batches)."""

    epoch: int  # 1-based
    train_loss: float
    val_loss: float
    temperature: float  # 1 / exp(logit_scale), the mean over heads
    seconds: float
    is_best: bool


@dataclass
class Progress:
    """Where training stands: what a checkpoint saves and a resumed run restores."""

    best_state: dict[str, Tensor]
    history: list[EpochStats] = field(default_factory=list)
    best_val: float = float("inf")
    best_epoch: int = 0
    epoch: int = 0  # last finished epoch


def _atomic_save(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def save_last(
    ckpt_dir: Path,
    model: CalliperModel,
    optimizer: torch.optim.Optimizer,
    gen: torch.Generator,
    progress: Progress,
) -> None:
    """Write ``ckpt_dir/last.pt`` after an epoch (tensors and primitives only)."""
    cuda = next(model.parameters()).device.type == "cuda"
    _atomic_save(
        ckpt_dir / LAST_CHECKPOINT,
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "generator": gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state() if cuda else None,
            "history": [asdict(h) for h in progress.history],
            "best_val": progress.best_val,
            "best_epoch": progress.best_epoch,
            "best_state": progress.best_state,
            "epoch": progress.epoch,
        },
    )


def save_best(ckpt_dir: Path, model: CalliperModel, progress: Progress) -> None:
    """Write ``ckpt_dir/best.pt``: the best weights so far, loadable with ``load_model``."""
    save_weights(
        ckpt_dir / BEST_CHECKPOINT,
        model.spec,
        progress.best_state,
        extra={"best_epoch": progress.best_epoch, "best_val_loss": progress.best_val},
    )


def load_resume_state(
    path: Path,
    model: CalliperModel,
    optimizer: torch.optim.Optimizer,
    gen: torch.Generator,
    device: str,
) -> Progress:
    """Restore model, optimizer, generator and RNG states from ``last.pt``; return the progress.

    Raises:
        pickle.UnpicklingError: the file holds anything but tensors and primitives.
    """
    state = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    gen.set_state(state["generator"].cpu())
    torch.set_rng_state(state["torch_rng"].cpu())  # dropout masks continue as if never stopped
    if device.startswith("cuda") and state.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(state["cuda_rng"].cpu())
    return Progress(
        best_state=state["best_state"],
        history=[EpochStats(**h) for h in state["history"]],
        best_val=float(state["best_val"]),
        best_epoch=int(state["best_epoch"]),
        epoch=int(state["epoch"]),
    )
