"""Contrastive training of the location encoder (a plain function, no framework).

Data stay in memory as tensors: prepared coordinates (N, 2), an index into the table of distinct
text embeddings (N,), and that table (U, D). Batches are index slices of a seeded permutation.

Where the time goes, and what is done about it (docs/benchmarks.md has the figures):

- The positional encoding is fixed (no parameters), so it is computed once for all POIs before
  the first epoch (when it fits in ``PE_CACHE_MAX_BYTES``) and batches slice its output.
- When a batch has at least as many POIs as there are distinct texts, the projection runs on
  the distinct texts and the loss on their (U, B) scores (:func:`loss.clip_loss_grouped`):
  mathematically the same as projecting every POI's text and scoring the (B, B) matrix, at
  U/B of the cost (London: 69 distinct texts against 1,024 POIs per batch).
- The FCNet's dropout draws exactly torch's masks, faster (``networks.fast_dropout``).
- CPU threads: with ``num_threads=None`` a few real training steps are timed at one thread and
  at one per physical core, and the faster is kept (on a busy 2-core machine two threads can be
  ten times slower than one); timed again every ``THREADS_RECHECK_EPOCHS`` epochs and whenever
  an epoch is ``THREADS_RECHECK_SLOWDOWN`` times slower than the fastest since the last check.
  The choice stays set after training, like an explicit ``num_threads``.
- One host sync per epoch (the epoch's mean loss); none per step.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from calliper_pipeline.config import TrainConfig
from calliper_pipeline.model.calliper import CalliperModel, ModelSpec
from calliper_pipeline.model.loss import clip_loss, clip_loss_grouped

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = "last.pt"
PE_CACHE_MAX_BYTES = 2 * 2**30  # precompute the positional encoding of all POIs up to this size
PE_CACHE_CHUNK = 65_536  # POIs per chunk while precomputing it
THREADS_RECHECK_EPOCHS = 20  # with num_threads=None, time 1 vs all threads again this often
THREADS_RECHECK_SLOWDOWN = 1.5  # ... or as soon as an epoch is this much slower than the fastest


@dataclass(frozen=True)
class EpochStats:
    """One epoch's figures (losses are mean symmetric InfoNCE over the epoch's batches)."""

    epoch: int  # 1-based
    train_loss: float
    val_loss: float
    temperature: float  # 1 / exp(logit_scale)
    seconds: float
    is_best: bool


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
        """Training POIs processed per second of training-epoch time (forward + backward)."""
        return self.n_train / self.seconds_per_epoch if self.history else float("nan")


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random train/validation split of ``n`` items (the paper's is unseeded).

    Returns (train indices sorted, validation indices in a fixed random order).
    """
    if n < 2:
        raise ValueError(f"need at least 2 POIs to train, got {n}")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_val = max(1, round(n * val_fraction))
    # Validation keeps its seeded random order: batches of a sorted (file-ordered) set would
    # gather POIs of one source and category, many with identical texts, and read ~ln(B).
    return np.sort(perm[n_val:]), perm[:n_val]


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups as the authors: no decay for biases, 1-D params and logit_scale."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "bias" in name or "logit_scale" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [
        {"params": no_decay, "weight_decay": 0.0},
        {"params": decay, "weight_decay": weight_decay},
    ]


def make_optimizer(
    model: torch.nn.Module, cfg: TrainConfig, lr: float | None = None
) -> torch.optim.AdamW:
    """AdamW over :func:`parameter_groups`; torch's fused kernel where it applies (float32 on
    CPU or CUDA: one pass per tensor instead of about ten, the same update up to rounding)."""
    params = list(model.parameters())
    fused = all(p.dtype == torch.float32 and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(
        parameter_groups(model, cfg.weight_decay),
        lr=cfg.lr if lr is None else lr,
        fused=fused or None,
    )


class _Batches:
    """Tensors on the training device and the batched loss computation.

    ``features``: the positional encoding of every POI, computed once (None: encode per batch).
    ``grouped``: the batch has at least as many POIs as there are distinct texts, so the loss
    scores the distinct texts against the batch (:func:`loss.clip_loss_grouped`).
    """

    def __init__(
        self,
        coords: Tensor,
        text_index: Tensor,
        text_table: Tensor,
        batch_size: int,
        features: Tensor | None = None,
    ):
        self.coords = coords
        self.text_index = text_index
        self.text_table = text_table
        self.batch_size = batch_size
        self.features = features
        self.grouped = text_table.shape[0] <= batch_size

    def encode(self, model: CalliperModel, idx: Tensor) -> Tensor:
        """Location embeddings (B, embed_dim) of the POIs ``idx``."""
        if self.features is not None:
            return model.location_encoder.net(self.features[idx])
        return model.encode_location(self.coords[idx])

    def loss(self, model: CalliperModel, idx: Tensor) -> Tensor:
        loc = self.encode(model, idx)
        if self.grouped:
            txt = model.encode_text(self.text_table)  # (U, embed_dim)
            return clip_loss_grouped(model.logits(loc, txt), self.text_index[idx])
        txt = model.encode_text(self.text_table[self.text_index[idx]])
        return clip_loss(model.logits(loc, txt))

    def slices(self, order: Tensor, drop_last: bool) -> list[Tensor]:
        n = order.shape[0]
        bs = self.batch_size
        stops = range(bs, n + 1, bs) if drop_last and n >= bs else range(bs, n + bs, bs)
        return [order[s - bs : min(s, n)] for s in stops]


def precompute_features(model: CalliperModel, coords: Tensor) -> Tensor | None:
    """The positional encoding of all ``coords`` (N, pe.out_dim), or None when it has
    parameters or would take more than ``PE_CACHE_MAX_BYTES``."""
    pe = model.location_encoder.pe
    if any(True for _ in pe.parameters()):
        return None
    if coords.shape[0] * pe.out_dim * 4 > PE_CACHE_MAX_BYTES:
        return None
    with torch.no_grad():
        parts = [pe(coords[s : s + PE_CACHE_CHUNK]) for s in range(0, len(coords), PE_CACHE_CHUNK)]
    return torch.cat(parts) if parts else None


def _physical_cores() -> int:
    pairs: set[tuple[str, str]] = set()
    phys = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("physical id"):
                    phys = line.split(":", 1)[1].strip()
                elif line.startswith("core id"):
                    pairs.add((phys, line.split(":", 1)[1].strip()))
    except OSError:
        pass
    return len(pairs) or os.cpu_count() or 1


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def choose_threads(
    model: CalliperModel, data: _Batches, idx: Tensor, cfg: TrainConfig, repeats: int = 3
) -> int:
    """The faster of 1 thread and one per physical core for this training step, measured.

    Times ``repeats`` steps of each (interleaved, best of) on a copy of the model with its own
    optimizer; the global RNG is restored, so training draws exactly what it would have.
    """
    candidates = sorted({1, min(_physical_cores(), _usable_cpus())})
    if len(candidates) == 1:
        return candidates[0]
    probe = copy.deepcopy(model).train()
    opt = make_optimizer(probe, cfg, lr=0.0)  # lr 0: the copy's steps change nothing
    batch = idx[: data.batch_size]
    best = dict.fromkeys(candidates, math.inf)
    timing = list(candidates)
    with torch.random.fork_rng(devices=[]):
        for rnd in range(repeats + 1):  # round 0 warms up
            for n in timing:
                torch.set_num_threads(n)
                t0 = time.perf_counter()
                loss = data.loss(probe, batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if rnd:
                    best[n] = min(best[n], time.perf_counter() - t0)
            if rnd:  # stop timing a setting already 3 times slower than one thread
                timing = [n for n in timing if best[n] <= 3 * best[1]]
    chosen = min(candidates, key=lambda n: best[n])
    logger.info(
        "torch threads: %d (step %s)",
        chosen,
        ", ".join(f"{n} thread(s) {best[n] * 1e3:.0f} ms" for n in candidates),
    )
    return chosen


def _autocast(device: str, bf16: bool) -> Any:
    if bf16 and device.startswith("cuda"):
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


def _evaluate(model: CalliperModel, data: _Batches, idx: Tensor, cfg: TrainConfig) -> float:
    model.eval()
    total = torch.zeros((), device=idx.device)
    batches = data.slices(idx, drop_last=len(idx) >= cfg.batch_size)
    with torch.no_grad(), _autocast(cfg.device, cfg.bf16):
        for b in batches:
            total += data.loss(model, b).detach()
    model.train()
    return float(total) / max(len(batches), 1)


def _save_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def train(
    spec: ModelSpec,
    coords: np.ndarray,
    text_index: np.ndarray,
    text_table: np.ndarray,
    cfg: TrainConfig,
    on_epoch_end: Callable[[EpochStats], None] | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    show_progress: bool = False,
) -> TrainResult:
    """Train a CaLLiPer model.

    Args:
        spec: model specification (encoder config, text dim, centre, CRS).
        coords: (N, 2) float32 prepared coordinates (see ``model.prepare_coords``).
        text_index: (N,) int row of ``text_table`` holding each POI's text embedding.
        text_table: (U, D) float32 frozen text embeddings of the distinct texts.
        cfg: training configuration (paper defaults).
        on_epoch_end: called once per epoch with its :class:`EpochStats` (e.g. MLflow logging).
        checkpoint_dir: where ``last.pt`` (resumable state) and ``best.pt`` go; None: memory only.
        resume: continue from ``checkpoint_dir/last.pt`` if it exists.
        show_progress: tqdm bar over epochs.

    Returns:
        :class:`TrainResult` whose model holds the best-validation weights, in eval mode.
    """
    device = cfg.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA device")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)

    n = len(coords)
    train_idx_np, val_idx_np = split_indices(n, cfg.val_fraction, cfg.seed)
    model = CalliperModel(spec).to(device)
    optimizer = make_optimizer(model, cfg)
    pin = device.startswith("cuda")
    coords_t = torch.from_numpy(np.ascontiguousarray(coords, np.float32)).to(
        device, non_blocking=pin
    )
    data = _Batches(
        coords_t,
        torch.from_numpy(np.asarray(text_index, np.int64)).to(device, non_blocking=pin),
        torch.from_numpy(np.ascontiguousarray(text_table, np.float32)).to(device),
        cfg.batch_size,
        features=precompute_features(model, coords_t),
    )
    train_idx = torch.from_numpy(train_idx_np).to(device)
    val_idx = torch.from_numpy(val_idx_np).to(device)
    threads = torch.get_num_threads()
    auto_threads = device == "cpu" and not cfg.num_threads
    if auto_threads:
        threads = choose_threads(model, data, train_idx, cfg)
        torch.set_num_threads(threads)
    threads_checked_at, fastest_epoch = 0, math.inf
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)

    history: list[EpochStats] = []
    best_val, best_epoch, start_epoch = math.inf, 0, 1
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir else None
    if ckpt_dir:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        last = ckpt_dir / LAST_CHECKPOINT
        if resume and last.exists():
            state = torch.load(last, map_location=device, weights_only=False)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            gen.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])  # dropout masks continue as if never stopped
            if device.startswith("cuda") and state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(state["cuda_rng"])
            history = [EpochStats(**h) for h in state["history"]]
            best_val, best_epoch = state["best_val"], state["best_epoch"]
            best_state = state["best_state"]
            start_epoch = state["epoch"] + 1
            logger.info("resumed from %s at epoch %d", last, start_epoch)

    t_start = time.perf_counter()
    stopped_early = False
    epochs = range(start_epoch, cfg.epochs + 1)
    bar = tqdm(epochs, desc="train", unit="epoch", disable=not show_progress)
    model.train()
    for epoch in bar:
        t0 = time.perf_counter()
        order = train_idx[torch.randperm(len(train_idx), generator=gen).to(device)]
        running = torch.zeros((), device=device)
        batches = data.slices(order, cfg.drop_last)
        for b in batches:
            with _autocast(device, cfg.bf16):
                loss = data.loss(model, b)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += loss.detach()
        train_loss = float(running) / max(len(batches), 1)  # the one sync per epoch
        val_loss = _evaluate(model, data, val_idx, cfg)
        is_best = val_loss < best_val
        if is_best:
            best_val, best_epoch = val_loss, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        stats = EpochStats(
            epoch=epoch,
            train_loss=train_loss,
            val_loss=val_loss,
            temperature=float(1.0 / model.logit_scale.detach().exp()),
            seconds=time.perf_counter() - t0,
            is_best=is_best,
        )
        history.append(stats)
        bar.set_postfix(train=f"{train_loss:.3f}", val=f"{val_loss:.3f}", best=best_epoch)
        if on_epoch_end is not None:
            on_epoch_end(stats)
        if ckpt_dir:
            _save_state(
                ckpt_dir / LAST_CHECKPOINT,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "generator": gen.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state() if device.startswith("cuda") else None,
                    "history": [asdict(h) for h in history],
                    "best_val": best_val,
                    "best_epoch": best_epoch,
                    "best_state": best_state,
                    "epoch": epoch,
                },
            )
        patience = cfg.early_stopping_patience
        if patience is not None and epoch - best_epoch >= patience:
            stopped_early = True
            logger.info("early stop at epoch %d (best %d)", epoch, best_epoch)
            break
        fastest_epoch = min(fastest_epoch, stats.seconds)
        if auto_threads and (
            epoch - threads_checked_at >= THREADS_RECHECK_EPOCHS
            or stats.seconds > THREADS_RECHECK_SLOWDOWN * fastest_epoch
        ):
            # the machine's load changed, or may have: measure again (about a second)
            threads = choose_threads(model, data, train_idx, cfg)
            torch.set_num_threads(threads)
            threads_checked_at, fastest_epoch = epoch, math.inf
    bar.close()

    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(
        model=model.cpu(),
        history=history,
        best_epoch=best_epoch,
        best_val_loss=best_val,
        seconds=time.perf_counter() - t_start,
        n_train=len(train_idx_np),
        n_val=len(val_idx_np),
        stopped_early=stopped_early,
        device=device,
        extra={"num_threads": threads, "pe_precomputed": data.features is not None},
    )
