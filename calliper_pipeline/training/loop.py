"""Contrastive training of the location encoder (a plain function, no framework).

Data stay in memory as tensors (:mod:`.batches`): prepared coordinates (N, 2), the table of
distinct text embeddings (U, D) and each head's targets. Batches are index slices of a seeded
permutation. Checkpoints are in :mod:`.checkpoints`, optimiser and thread choice in :mod:`.optim`.

Where the time goes, and what is done about it (docs/benchmarks.md has the figures):

- The positional encoding is fixed (no parameters), so it is computed once for all points before
  the first epoch (when it fits in ``PE_CACHE_MAX_BYTES``) and batches slice its output.
- When a batch has at least as many points as there are distinct texts, an own-text head
  projects the distinct texts and scores them against the batch (:func:`loss.clip_loss_grouped`):
  mathematically the same as projecting every point's text and scoring the (B, B) matrix, at
  U/B of the cost (London: 69 distinct texts against 1,024 POIs per batch). Neighbourhood heads
  project the (U, D) table once per batch and mix it per point; their (B, B) InfoNCE is one
  fused autograd node (:func:`loss.clip_loss`), the logit scale applied to the text side.
- The FCNet's dropout draws exactly torch's masks, faster (``networks.fast_dropout``).
- CPU threads: with ``num_threads=None`` a few real training steps are timed at one thread and
  at one per physical core, and the faster is kept; timed again every ``THREADS_RECHECK_EPOCHS``
  epochs and whenever an epoch is ``THREADS_RECHECK_SLOWDOWN`` times slower than the fastest
  since the last check. The choice stays set after training, like an explicit ``num_threads``.
- One host sync per epoch (the epoch's mean loss); none per step.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from calliper_pipeline.config import TrainConfig
from calliper_pipeline.errors import ConfigError
from calliper_pipeline.model.calliper import CalliperModel, ModelSpec
from calliper_pipeline.training import distributed
from calliper_pipeline.training.batches import (
    Batches,
    HeadTensors,
    precompute_features,
    split_indices,
)
from calliper_pipeline.training.checkpoints import (
    LAST_CHECKPOINT,
    EpochStats,
    Progress,
    decide_resume,
    fingerprint,
    load_resume_state,
    save_best,
    save_last,
)
from calliper_pipeline.training.optim import choose_threads, make_optimizer
from calliper_pipeline.training.targets import HeadTargets

logger = logging.getLogger(__name__)

THREADS_RECHECK_EPOCHS = 20  # with num_threads=None, time 1 vs all threads again this often
THREADS_RECHECK_SLOWDOWN = 1.5  # ... or as soon as an epoch is this much slower than the fastest

__all__ = ["TrainResult", "train", "validation_loss"]


@dataclass
class TrainResult:
    """The trained model (best-validation weights loaded) and how training went."""

    model: CalliperModel
    history: list[EpochStats]
    best_epoch: int
    best_val_loss: float
    seconds: float
    n_train: int
    n_val: int
    stopped_early: bool = False
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds_per_epoch(self) -> float:
        epochs = [h.seconds for h in self.history]
        return float(np.mean(epochs)) if epochs else float("nan")

    @property
    def pois_per_second(self) -> float:
        """Training points processed per second of training-epoch time (forward + backward)."""
        return self.n_train / self.seconds_per_epoch if self.history else float("nan")


def _autocast(device: str, bf16: bool) -> Any:
    if bf16 and device.startswith("cuda"):
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


def _evaluate(model: CalliperModel, data: Batches, idx: Tensor, cfg: TrainConfig) -> float:
    """Mean validation loss (eval mode, no dropout) over batches of ``idx``."""
    model.eval()
    total = torch.zeros((), device=idx.device)
    batches = data.slices(idx, drop_last=len(idx) >= cfg.batch_size)
    with torch.no_grad(), _autocast(cfg.device, cfg.bf16):
        for b in batches:
            total += data.loss(model, b).detach()
    model.train()
    return float(total) / max(len(batches), 1)


def validation_loss(
    model: CalliperModel,
    coords: np.ndarray,
    text_index: np.ndarray,
    text_table: np.ndarray,
    cfg: TrainConfig,
    heads: Sequence[HeadTargets] | None = None,
    multi_positive: bool = False,
) -> float:
    """The mean InfoNCE loss (eval mode) of ``model`` on the validation split that
    :func:`train` draws with ``cfg`` (``val_fraction``, ``seed``) from these inputs: the
    quantity training minimises and picks its best epoch by. ``coords`` must be prepared for
    ``model.spec`` (:func:`model.calliper.prepare_coords`); ``heads`` as for :func:`train`."""
    _check_inputs(model.spec, len(coords), heads, cfg.device)
    model = model.to(cfg.device)
    data = _make_data(model, coords, text_index, text_table, cfg, heads, multi_positive)
    _, val_idx = split_indices(len(coords), cfg.val_fraction, cfg.seed)
    loss = _evaluate(model, data, torch.from_numpy(val_idx).to(cfg.device), cfg)
    model.eval()
    return loss


def _train_epoch(
    model: CalliperModel,
    optimizer: torch.optim.Optimizer,
    data: Batches,
    train_idx: Tensor,
    gen: torch.Generator,
    cfg: TrainConfig,
    world: distributed.World,
) -> float:
    """One pass over a fresh permutation of ``train_idx``; the epoch's mean training loss."""
    order = train_idx[torch.randperm(len(train_idx), generator=gen).to(train_idx.device)]
    running = torch.zeros((), device=train_idx.device)
    batches = data.slices(order, cfg.drop_last)
    for b in batches:
        with _autocast(cfg.device, cfg.bf16):
            loss = data.loss(model, b)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(model, world)
        optimizer.step()
        running += loss.detach()
    return float(running) / max(len(batches), 1)  # the one sync per epoch


def _make_data(
    model: CalliperModel,
    coords: np.ndarray,
    text_index: np.ndarray,
    text_table: np.ndarray,
    cfg: TrainConfig,
    heads: Sequence[HeadTargets] | None,
    multi_positive: bool,
) -> Batches:
    """The training tensors on ``cfg.device`` (positional encoding precomputed if it fits)."""
    device = cfg.device
    pin = device.startswith("cuda")
    coords_t = torch.from_numpy(np.ascontiguousarray(coords, np.float32)).to(
        device, non_blocking=pin
    )
    head_tensors = [HeadTensors.from_targets(h, device) for h in heads] if heads else None
    return Batches(
        coords_t,
        torch.from_numpy(np.asarray(text_index, np.int64)).to(device, non_blocking=pin),
        torch.from_numpy(np.ascontiguousarray(text_table, np.float32)).to(device),
        cfg.batch_size,
        features=precompute_features(model, coords_t),
        heads=head_tensors,
        multi_positive=multi_positive,
    )


def _check_inputs(
    spec: ModelSpec, n: int, heads: Sequence[HeadTargets] | None, device: str
) -> None:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA device")
    n_heads = len(heads) if heads else 1
    if n_heads != spec.heads:
        raise ValueError(f"the spec has {spec.heads} head(s) but {n_heads} target set(s) given")
    for h in heads or ():
        if len(h) != n:
            raise ValueError(f"head {h.name!r} has {len(h)} targets for {n} points")


class _ThreadTuner:
    """With ``num_threads=None`` on CPU: re-measure the thread count when the load may change."""

    def __init__(self, model: CalliperModel, data: Batches, idx: Tensor, cfg: TrainConfig):
        self.model, self.data, self.idx, self.cfg = model, data, idx, cfg
        self.auto = cfg.device == "cpu" and not cfg.num_threads
        self.threads = torch.get_num_threads()
        self.checked_at, self.fastest = 0, math.inf
        if self.auto:
            self._measure()

    def _measure(self) -> None:
        self.threads = choose_threads(self.model, self.data, self.idx, self.cfg)
        torch.set_num_threads(self.threads)

    def after_epoch(self, epoch: int, seconds: float) -> None:
        self.fastest = min(self.fastest, seconds)
        if self.auto and (
            epoch - self.checked_at >= THREADS_RECHECK_EPOCHS
            or seconds > THREADS_RECHECK_SLOWDOWN * self.fastest
        ):
            self._measure()  # the machine's load changed, or may have (about a second)
            self.checked_at, self.fastest = epoch, math.inf


def train(
    spec: ModelSpec,
    coords: np.ndarray,
    text_index: np.ndarray,
    text_table: np.ndarray,
    cfg: TrainConfig,
    on_epoch_end: Callable[[EpochStats], None] | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool | str = False,
    show_progress: bool = False,
    heads: Sequence[HeadTargets] | None = None,
    multi_positive: bool = False,
) -> TrainResult:
    """Train a CaLLiPer model; the best epoch is the one with the lowest validation loss.

    Args:
        spec: model specification (encoder config, text dim, centre, CRS, number of heads).
        coords: (N, 2) float32 prepared coordinates (see ``model.prepare_coords``).
        text_index: (N,) int row of ``text_table`` holding each point's own text.
        text_table: (U, D) float32 frozen text embeddings of the distinct texts.
        cfg: training configuration (paper defaults).
        on_epoch_end: called once per epoch with its :class:`EpochStats` (e.g. MLflow logging).
        checkpoint_dir: where ``last.pt`` (resumable state) and ``best.pt`` (best model so far,
            ``load_model`` format) go; None: memory only.
        resume: what to do with an existing ``checkpoint_dir/last.pt``: a
            :data:`~calliper_pipeline.training.checkpoints.ResumeMode` (``"no"``, ``"yes"``,
            ``"restart"``, ``"auto"``); ``True``/``False`` mean ``"yes"``/``"no"``.
        show_progress: tqdm bar over epochs.
        heads: one target set per model head (``spec.heads`` of them); None: the paper's single
            own-text head from ``text_index``.
        multi_positive: batch items sharing a target are all positives.

    Returns:
        :class:`TrainResult` whose model holds the best-validation weights, in eval mode.

    Raises:
        CheckpointError: see :func:`~calliper_pipeline.training.checkpoints.decide_resume`.
    """
    _check_inputs(spec, len(coords), heads, cfg.device)
    if cfg.epochs < 1:
        raise ConfigError(f"epochs must be at least 1, got {cfg.epochs}")
    if cfg.bf16 and not cfg.device.startswith("cuda"):
        logger.warning("bf16 applies on CUDA only; training on %s in float32", cfg.device)
    mode = {True: "yes", False: "no"}.get(resume, resume) if isinstance(resume, bool) else resume
    arrays = [coords, text_index, text_table, *(h.group for h in heads or ())]
    run_fingerprint = fingerprint(spec, cfg, arrays)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    train_idx_np, val_idx_np = split_indices(len(coords), cfg.val_fraction, cfg.seed)
    model = CalliperModel(spec).to(cfg.device)
    optimizer = make_optimizer(model, cfg)
    data = _make_data(model, coords, text_index, text_table, cfg, heads, multi_positive)
    world = distributed.current()
    if world.size > 1:  # a share of each global batch per process (training/distributed.py)
        data = distributed.DistributedBatches(data, world)
    train_idx = torch.from_numpy(train_idx_np).to(cfg.device)
    val_idx = torch.from_numpy(val_idx_np).to(cfg.device)
    tuner_cfg = cfg
    if world.size > 1 and cfg.device == "cpu" and not cfg.num_threads:
        # processes share the cores; a measured choice could differ between them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world.size))
        tuner_cfg = replace(cfg, num_threads=torch.get_num_threads())
    tuner = _ThreadTuner(model, data, train_idx, tuner_cfg)
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir else None
    progress, done = _start(model, optimizer, gen, ckpt_dir, str(mode), cfg.device, run_fingerprint)
    resumed_after_epoch = progress.epoch
    t_start = time.perf_counter()
    stopped_early = done or _run_epochs(
        model,
        optimizer,
        data,
        (train_idx, val_idx),
        gen,
        cfg,
        progress,
        tuner,
        on_epoch_end if world.is_main else None,
        (ckpt_dir if world.is_main else None, run_fingerprint),
        show_progress and world.is_main,
        world,
    )
    model.load_state_dict(progress.best_state)
    model.eval()
    return TrainResult(
        model=model.cpu(),
        history=progress.history,
        best_epoch=progress.best_epoch,
        best_val_loss=progress.best_val,
        seconds=time.perf_counter() - t_start,
        n_train=len(train_idx_np),
        n_val=len(val_idx_np),
        stopped_early=stopped_early,
        device=cfg.device,
        extra={
            "num_threads": tuner.threads,
            "pe_precomputed": data.features is not None,
            "resumed_after_epoch": resumed_after_epoch,
        },
    )


def _start(
    model: CalliperModel,
    optimizer: torch.optim.Optimizer,
    gen: torch.Generator,
    ckpt_dir: Path | None,
    mode: str,
    device: str,
    run_fingerprint: dict[str, str],
) -> tuple[Progress, bool]:
    """Fresh progress, or the one restored from ``ckpt_dir/last.pt`` when ``mode`` says to
    resume; and whether that run had stopped early (then no epoch is left to train)."""
    progress = Progress(best_state={k: v.detach().clone() for k, v in model.state_dict().items()})
    if not ckpt_dir:
        return progress, False
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    last = ckpt_dir / LAST_CHECKPOINT
    info = decide_resume(last, mode, run_fingerprint, log=logger.info)
    if info is None:
        return progress, False
    progress = load_resume_state(last, model, optimizer, gen, device)
    stopped_early = info.finished and info.epoch < info.epochs
    logger.info(
        "resumed from %s after epoch %d%s", last, progress.epoch,
        " (it had stopped early: nothing left to train)" if stopped_early else "",
    )  # fmt: skip
    return progress, stopped_early


def _run_epochs(
    model: CalliperModel,
    optimizer: torch.optim.Optimizer,
    data: Batches,
    split: tuple[Tensor, Tensor],
    gen: torch.Generator,
    cfg: TrainConfig,
    progress: Progress,
    tuner: _ThreadTuner,
    on_epoch_end: Callable[[EpochStats], None] | None,
    checkpoints: tuple[Path | None, dict[str, str]],
    show_progress: bool,
    world: distributed.World,
) -> bool:
    """Epochs ``progress.epoch + 1 .. cfg.epochs``, updating ``progress``; True if stopped early."""
    train_idx, val_idx = split
    ckpt_dir, run_fingerprint = checkpoints
    epochs = range(progress.epoch + 1, cfg.epochs + 1)
    bar = tqdm(epochs, desc="train", unit="epoch", disable=not show_progress)
    model.train()
    stopped_early = False
    for epoch in bar:
        t0 = time.perf_counter()
        train_loss = _train_epoch(model, optimizer, data, train_idx, gen, cfg, world)
        val_loss = _evaluate(model, data, val_idx, cfg)
        is_best = val_loss < progress.best_val
        if is_best:
            progress.best_val, progress.best_epoch = val_loss, epoch
            progress.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        temps = model.temperatures()
        seconds = time.perf_counter() - t0
        stats = EpochStats(epoch, train_loss, val_loss, float(np.mean(temps)), seconds, is_best)
        progress.history.append(stats)
        progress.epoch = epoch
        bar.set_postfix(train=f"{train_loss:.3f}", val=f"{val_loss:.3f}", best=progress.best_epoch)
        patience = cfg.early_stopping_patience
        stopped_early = patience is not None and epoch - progress.best_epoch >= patience
        if ckpt_dir:
            save_last(
                ckpt_dir, model, optimizer, gen, progress, epochs_target=cfg.epochs,
                finished=stopped_early or epoch == cfg.epochs, run_fingerprint=run_fingerprint,
            )  # fmt: skip
            if is_best:
                save_best(ckpt_dir, model, progress)
        if on_epoch_end is not None:
            on_epoch_end(stats)
        if stopped_early:
            logger.info("early stop at epoch %d (best %d)", epoch, progress.best_epoch)
            break
        tuner.after_epoch(epoch, stats.seconds)
    bar.close()
    return stopped_early
