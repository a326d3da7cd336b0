"""Training checkpoints: ``last.pt`` (resumable state) and ``best.pt`` (best model so far).

Both hold only tensors and primitives and are read with ``torch.load(weights_only=True)``:

- ``last.pt``: model and optimizer state, the epoch permutation generator and torch RNG states,
  the history, the best epoch so far and its weights; :func:`load_resume_state` restores them so
  that a resumed run continues exactly as if never stopped.
- ``best.pt``: the best-validation model so far, in :func:`model.calliper.save_model`'s format
  (load it with :func:`model.calliper.load_model`), rewritten at each improvement.

``last.pt`` also carries a :func:`fingerprint` of what it was trained on (model spec, training
settings, a SHA-256 of the training arrays) and whether the run ended. What a new run does with
an existing ``last.pt`` is its :data:`ResumeMode`:

- ``"no"`` (the CLI without flags): start fresh, but refuse to overwrite an *unfinished* run's
  checkpoint (one that neither reached its epochs nor stopped early) with a one-line
  :class:`CheckpointError` that says how to go on;
- ``"yes"`` (``--resume``): continue it; a checkpoint of other settings or other data is refused,
  naming every field that differs (epochs, early stopping, device and threads may change);
- ``"restart"`` (``--restart``): discard it and start fresh;
- ``"auto"`` (Dagster): continue when it matches and is unfinished, else start fresh (logged), so
  a run killed part-way resumes when re-run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from calliper_pipeline.config import TrainConfig
from calliper_pipeline.errors import ConfigError
from calliper_pipeline.model.calliper import CalliperModel, ModelSpec, save_weights

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"

ResumeMode = Literal["no", "yes", "restart", "auto"]
RESUME_MODES: tuple[str, ...] = ("no", "yes", "restart", "auto")
#: Training settings a resumed run may change: how long, and where, it trains.
RESUMABLE_CHANGES = frozenset({"epochs", "early_stopping_patience", "device", "num_threads"})


class CheckpointError(ConfigError):
    """An existing checkpoint cannot be used (or overwritten) the way the run asks."""


def fingerprint(spec: ModelSpec, cfg: TrainConfig, arrays: Sequence[np.ndarray]) -> dict[str, str]:
    """What a checkpoint was trained on, as flat ``{field: value}`` strings: the model spec,
    the training settings except :data:`RESUMABLE_CHANGES`, and a SHA-256 (16 hex digits) of
    the training arrays (coordinates, text rows, text table) with their shapes."""
    out: dict[str, str] = {}
    for key, value in spec.to_dict().items():
        if isinstance(value, Mapping):
            out.update({f"spec.{key}.{k}": str(v) for k, v in value.items()})
        else:
            out[f"spec.{key}"] = str(value)
    for f in fields(cfg):
        if f.name not in RESUMABLE_CHANGES:
            out[f"train.{f.name}"] = str(getattr(cfg, f.name))
    digest = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        digest.update(f"{a.dtype}{a.shape}".encode())
        digest.update(a.tobytes())
    out["data.sha256"] = digest.hexdigest()[:16]
    out["data.n_points"] = str(len(arrays[0])) if arrays else "0"
    return out


def differences(saved: Mapping[str, str], current: Mapping[str, str]) -> list[str]:
    """``"field: saved -> current"`` for every field whose value differs (sorted)."""
    keys = sorted(set(saved) | set(current))
    return [
        f"{k}: {saved.get(k, '(absent)')} -> {current.get(k, '(absent)')}"
        for k in keys
        if saved.get(k) != current.get(k)
    ]


@dataclass(frozen=True)
class CheckpointInfo:
    """What :func:`read_info` learns of a ``last.pt`` without restoring it."""

    path: Path
    epoch: int
    epochs: int  # the run's target
    finished: bool  # reached its epochs or stopped early
    fingerprint: dict[str, str]


def read_info(path: Path) -> CheckpointInfo | None:
    """The header of ``last.pt`` (None when absent); a file older than fingerprints has an
    empty one."""
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    epoch = int(state["epoch"])
    target = int(state.get("epochs_target", epoch))
    finished = bool(state.get("finished", epoch >= target))
    return CheckpointInfo(path, epoch, target, finished, dict(state.get("fingerprint") or {}))


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
    *,
    epochs_target: int,
    finished: bool,
    run_fingerprint: Mapping[str, str],
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
            "epochs_target": epochs_target,
            "finished": finished,
            "fingerprint": dict(run_fingerprint),
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


def decide_resume(
    last: Path, mode: str, current: Mapping[str, str], log: Any = None
) -> CheckpointInfo | None:
    """The checkpoint to continue from under ``mode`` (see the module doc), or None to start
    fresh.

    Raises:
        CheckpointError: ``"no"`` over an unfinished run's checkpoint; ``"yes"`` over a
            checkpoint of other settings or data (naming what differs).
    """
    if mode not in RESUME_MODES:
        raise ConfigError(f"resume must be one of {RESUME_MODES}, got {mode!r}")
    info = read_info(last)
    say = log or (lambda _msg: None)
    if info is None:
        if mode == "yes":
            say(f"no checkpoint at {last}; starting fresh")
        return None
    diff = differences(info.fingerprint, current)
    if mode == "restart":
        say(f"discarding the checkpoint at {last} (epoch {info.epoch}); starting fresh")
        return None
    if mode == "no":
        if not info.finished:
            raise CheckpointError(
                f"{last} holds an unfinished run (epoch {info.epoch} of {info.epochs}); pass "
                "--resume to continue it or --restart to discard it and start over"
            )
        say(f"replacing the finished run's checkpoint at {last}")
        return None
    if diff:
        if mode == "yes":
            shown = "; ".join(diff[:6]) + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")
            raise CheckpointError(
                f"{last} was written for other settings or data ({shown}); run with the same "
                "settings to resume, or pass --restart to start over"
            )
        say(f"the checkpoint at {last} is of other settings or data; starting fresh")
        return None
    if mode == "auto" and info.finished:
        say(f"the checkpoint at {last} is of a finished run; starting fresh")
        return None
    return info
