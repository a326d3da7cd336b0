"""Probe networks and their training: the paper's protocol, as the authors' notebooks.

What the authors' notebooks (xlwang233/CaLLiPer ``luc.ipynb``, ``sdm.ipynb``) do, and this module
does the same (splits: :mod:`~calliper_pipeline.evaluation.splits`; metrics:
:mod:`~calliper_pipeline.evaluation.metrics`; the task / protocol / seed loop:
:mod:`~calliper_pipeline.evaluation.protocol`):

- **Features** are the frozen encoder's raw output cast to float32: no L2 normalisation, no
  standardisation (the notebooks feed ``loc_enc(coords).float()`` straight into the probe; the
  L2 normalisation lives only inside the contrastive loss). Baseline features are fed raw too.
- **Probes**: ``Linear(D, C)`` or ``Linear(D, 64) -> ReLU -> Linear(64, C)``; Adam (lr 1e-3),
  shuffled mini-batches of 128, at most 300 epochs.
- **Early stopping**: after each epoch the validation loss is the mean of the per-batch losses
  over consecutive batches of 128 (the notebooks' DataLoader average, which weighs a short last
  batch like a full one); only a strictly lower loss counts as an improvement; training stops
  after ``patience`` (10) epochs without one; the best-validation weights are restored for the
  test.
- **Losses**: LUC cross-entropy; SDM ``KLDivLoss(reduction="batchmean")`` of ``log_softmax``
  outputs against the target proportions.
- **Seeds** 42, 24, 7, 0, 100: before each run ``torch.manual_seed`` and ``np.random.seed``; the
  probe is initialised, then each epoch's shuffle is drawn from torch's CPU generator exactly as
  ``DataLoader(shuffle=True)`` and an unshuffled validation loader draw it, so that with the
  same features a run repeats the notebook's runs draw for draw. The RNG states are saved and
  restored around each run, so the caller's state is untouched. (The authors' SDM notebook does
  not seed its runs; we do.)

Speed: the seeds of a (task, probe) pair that share one split train side by side as one stacked
model (:func:`fit_probes`), each with exactly its own draws (initialisation, shuffles), so a run
repeats its single-seed run up to float rounding at a fraction of the Python overhead.
:func:`fit_probe` keeps the one-model loop the DataLoader parity test checks.

Threads: the probes' ops are tiny, so one intra-op thread is the fastest setting; extra threads
only add synchronisation, which costs an order of magnitude when the cores are shared with other
work (a London evaluation took minutes instead of seconds with two threads beside another job).
:func:`probe_threads` sets ``PROBE_THREADS`` intra-op threads for CPU probes and restores the
caller's setting afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from calliper_pipeline.config import ProbeConfig
from calliper_pipeline.evaluation.data import LANDUSE_TASK

PROBE_THREADS = 1  # torch intra-op threads while CPU probes train (restored afterwards)


def build_probe(kind: str, in_dim: int, n_out: int, hidden: int = 64) -> nn.Module:
    """``"linear"``: Linear(D, C); ``"mlp"``: Linear(D, hidden) -> ReLU -> Linear(hidden, C)."""
    if kind == "linear":
        return nn.Linear(in_dim, n_out)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, n_out))
    raise ValueError(f"unknown probe {kind!r}; expected 'linear' or 'mlp'")


class EarlyStopping:
    """Keeps the weights of the best validation loss; says when patience has run out."""

    def __init__(self, patience: int):
        self.patience = patience
        self.best_loss = math.inf
        self.best_epoch = 0  # 1-based; 0 = none yet
        self.best_state: dict[str, Tensor] | None = None
        self.bad_epochs = 0

    def step(self, val_loss: float, model: nn.Module, epoch: int) -> bool:
        """Record epoch ``epoch`` (1-based); True when training should stop."""
        if val_loss < self.best_loss:  # strict, as the notebooks; NaN never improves
            self.best_loss = val_loss
            self.best_epoch = epoch
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            self.bad_epochs = 0
            return False
        self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def restore(self, model: nn.Module) -> None:
        """Load the best weights into ``model``."""
        if self.best_state is None:
            raise RuntimeError("validation loss was never finite; no weights to restore")
        model.load_state_dict(self.best_state)


@dataclass(frozen=True)
class ProbeFit:
    """How one probe's training went."""

    best_epoch: int  # 1-based epoch whose weights were restored
    epochs_run: int
    best_val_loss: float
    val_losses: tuple[float, ...]


def _loss(task: str, logits: Tensor, target: Tensor) -> Tensor:
    if task == LANDUSE_TASK:
        return F.cross_entropy(logits, target)
    return F.kl_div(F.log_softmax(logits, dim=1), target, reduction="batchmean")


def _draw_loader_seed(generator: torch.Generator | None = None) -> int:
    """One int64 draw from torch's global CPU generator (or ``generator``, holding the state
    the global one would have), as DataLoader and RandomSampler make."""
    return int(torch.empty((), dtype=torch.int64).random_(generator=generator).item())


def _loader_permutation(n: int, generator: torch.Generator | None = None) -> Tensor:
    """This epoch's training order, drawn as ``DataLoader(shuffle=True)`` draws it in torch 2.x.

    The iterator first draws its base seed, then RandomSampler draws the seed of the generator
    behind ``randperm``. ``tests/unit/evaluation/test_evaluate.py`` checks the equivalence with
    DataLoader.
    ``generator``: draw from it instead of the global generator (see :func:`fit_probes`).
    """
    _draw_loader_seed(generator)
    gen = torch.Generator().manual_seed(_draw_loader_seed(generator))
    return torch.randperm(n, generator=gen)


@torch.no_grad()
def _batched_loss(model: nn.Module, task: str, x: Tensor, y: Tensor, batch_size: int) -> float:
    """Mean of per-batch losses over consecutive batches (the notebooks' validation loss)."""
    model.eval()
    losses = [
        _loss(task, model(x[s : s + batch_size]), y[s : s + batch_size]).item()
        for s in range(0, len(x), batch_size)
    ]
    return float(np.mean(losses))


def fit_probe(
    model: nn.Module,
    task: str,
    train: tuple[Tensor, Tensor],
    val: tuple[Tensor, Tensor],
    cfg: ProbeConfig,
) -> ProbeFit:
    """Train ``model`` in place with Adam and early stopping; restore the best weights.

    Randomness comes from torch's global CPU generator (seed it, or use :func:`seeded`).
    """
    (x_tr, y_tr), (x_va, y_va) = train, val
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    stopper = EarlyStopping(cfg.patience)
    val_losses: list[float] = []
    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        perm = _loader_permutation(len(x_tr)).to(x_tr.device)
        for start in range(0, len(perm), cfg.batch_size):
            batch = perm[start : start + cfg.batch_size]
            loss = _loss(task, model(x_tr[batch]), y_tr[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
        _draw_loader_seed()  # the validation DataLoader's iterator draws one too
        val_losses.append(_batched_loss(model, task, x_va, y_va, cfg.batch_size))
        if stopper.step(val_losses[-1], model, epoch):
            break
    stopper.restore(model)
    model.eval()
    return ProbeFit(stopper.best_epoch, len(val_losses), stopper.best_loss, tuple(val_losses))


class StackedProbes(nn.Module):
    """S probes of one kind with stacked weights, trained side by side as one batched model.

    Probe s sees its own rows: input (S, b, D) -> output (S, b, C) through ``baddbmm``, so the
    S runs of a (task, probe) pair cost about one run's Python and autograd overhead. Each
    probe's gradient is its own loss's (the total is the sum of per-probe losses), and Adam is
    elementwise, so every probe trains exactly as it would alone, up to float rounding.
    """

    def __init__(self, probes: Sequence[nn.Module]):
        super().__init__()
        linears = [[m for m in p.modules() if isinstance(m, nn.Linear)] for p in probes]
        if not linears or any(len(ls) != len(linears[0]) for ls in linears):
            raise ValueError("probes must be of one kind")
        self.kind = "linear" if isinstance(probes[0], nn.Linear) else "mlp"
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack([ls[i].weight.detach().transpose(0, 1) for ls in linears]))
            for i in range(len(linears[0]))
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.stack([ls[i].bias.detach() for ls in linears]).unsqueeze(1))
            for i in range(len(linears[0]))
        )

    def forward(self, x: Tensor) -> Tensor:
        """(S, b, D) -> (S, b, C)."""
        h = x
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            if i < len(self.weights) - 1:
                h = torch.relu(h)
        return h

    def probe_state(self, s: int) -> dict[str, Tensor]:
        """Probe ``s``'s weights as the state dict of a :func:`build_probe` module."""
        names = ("",) if self.kind == "linear" else ("0.", "2.")
        out: dict[str, Tensor] = {}
        for name, w, b in zip(names, self.weights, self.biases, strict=True):
            out[f"{name}weight"] = w[s].detach().transpose(0, 1).clone()
            out[f"{name}bias"] = b[s, 0].detach().clone()
        return out


def _stacked_losses(task: str, out: Tensor, target: Tensor) -> Tensor:
    """(S,) per-probe losses of (S, b, C) outputs: :func:`_loss` of each probe's batch."""
    s, b, c = out.shape
    if task == LANDUSE_TASK:
        ce = F.cross_entropy(out.reshape(s * b, c), target.reshape(s * b), reduction="none")
        return ce.view(s, b).mean(dim=1)
    kl = F.kl_div(F.log_softmax(out, dim=2), target, reduction="none")
    return kl.sum(dim=(1, 2)) / b  # "batchmean" per probe


def _seeded_probes(
    kind: str, in_dim: int, n_out: int, seeds: Sequence[int], cfg: ProbeConfig
) -> tuple[list[nn.Module], list[torch.Generator]]:
    """Each seed's probe, built inside :func:`seeded`, and a private generator holding the
    global generator's state right after that build (a run's later draws are its loaders')."""
    probes, gens = [], []
    for seed in seeds:
        with seeded(seed):
            probes.append(build_probe(kind, in_dim, n_out, cfg.mlp_hidden))
            gens.append(torch.Generator().set_state(torch.get_rng_state()))
    return probes, gens


@dataclass
class _StackedStopping:
    """:class:`EarlyStopping` for each probe of a :class:`StackedProbes`."""

    patience: int
    n: int
    best_loss: list[float] = field(init=False)
    best_epoch: list[int] = field(init=False)
    best_state: list[dict[str, Tensor] | None] = field(init=False)
    bad: list[int] = field(init=False)
    val_losses: list[list[float]] = field(init=False)
    active: list[bool] = field(init=False)

    def __post_init__(self) -> None:
        self.best_loss = [math.inf] * self.n
        self.best_epoch = [0] * self.n
        self.best_state = [None] * self.n
        self.bad = [0] * self.n
        self.val_losses = [[] for _ in range(self.n)]
        self.active = [True] * self.n

    def step(self, per_batch: list[list[float]], stacked: StackedProbes, epoch: int) -> bool:
        """Record epoch ``epoch`` from each probe's per-batch validation losses; True when
        every probe has stopped. A stopped probe is left out (its best weights are kept)."""
        for i in range(self.n):
            if not self.active[i]:
                continue
            loss_i = float(np.mean(per_batch[i]))
            self.val_losses[i].append(loss_i)
            if loss_i < self.best_loss[i]:  # strict, NaN never improves (as EarlyStopping)
                self.best_loss[i], self.best_epoch[i], self.bad[i] = loss_i, epoch, 0
                self.best_state[i] = stacked.probe_state(i)
            else:
                self.bad[i] += 1
                self.active[i] = self.bad[i] < self.patience
        return not any(self.active)

    def restore(self, i: int, probe: nn.Module) -> ProbeFit:
        """Load probe ``i``'s best weights into ``probe``; its fit."""
        state = self.best_state[i]
        if state is None:
            raise RuntimeError("validation loss was never finite; no weights to restore")
        probe.load_state_dict(state)
        losses = self.val_losses[i]
        return ProbeFit(self.best_epoch[i], len(losses), self.best_loss[i], tuple(losses))


def _stacked_train_epoch(
    stacked: StackedProbes,
    opt: torch.optim.Optimizer,
    task: str,
    train: tuple[Tensor, Tensor],
    gens: Sequence[torch.Generator],
    batch_size: int,
) -> None:
    """One epoch of every probe on its own shuffle of the training rows."""
    x_tr, y_tr = train
    stacked.train()
    perm = torch.stack([_loader_permutation(len(x_tr), g) for g in gens]).to(x_tr.device)
    for start in range(0, perm.shape[1], batch_size):
        rows = perm[:, start : start + batch_size]  # (S, b)
        flat = rows.reshape(-1)
        xb = x_tr.index_select(0, flat).view(*rows.shape, -1)
        yb = y_tr.index_select(0, flat).view(*rows.shape, *y_tr.shape[1:])
        loss = _stacked_losses(task, stacked(xb), yb).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for g in gens:
        _draw_loader_seed(g)  # the validation DataLoader's iterator draws one too


@torch.no_grad()
def _stacked_val_losses(
    stacked: StackedProbes, task: str, x_va: Tensor, y_va: Tensor, batch_size: int
) -> list[list[float]]:
    """(S, batches) per-batch validation losses, float32 values as _batched_loss's .item()s.

    ``x_va``/``y_va``: the validation rows expanded to (S, n_val, ...).
    """
    stacked.eval()
    return torch.stack(
        [
            _stacked_losses(task, stacked(x_va[:, s : s + batch_size]), y_va[:, s : s + batch_size])
            for s in range(0, x_va.shape[1], batch_size)
        ],
        dim=1,
    ).tolist()


def fit_probes(
    kind: str,
    task: str,
    train: tuple[Tensor, Tensor],
    val: tuple[Tensor, Tensor],
    n_out: int,
    seeds: Sequence[int],
    cfg: ProbeConfig,
) -> list[tuple[nn.Module, ProbeFit]]:
    """:func:`fit_probe` for every seed at once on one split; each seed's restored probe and fit.

    Seed s's run draws what it would draw alone inside :func:`seeded`: its probe is built
    there, and its shuffles come from a private generator holding the global generator's state
    right after that build (the only later draws of a run are its loaders' draws). The probes
    train as one :class:`StackedProbes`; a probe whose patience has run out is left out of
    the early-stopping bookkeeping (its best weights are kept) until every probe has stopped.

    Args:
        kind: ``"linear"`` or ``"mlp"``.
        task: ``"luc"`` (cross-entropy) or ``"sdm"`` (KL divergence).
        train: (x, y) training rows; x is (n, D) float32.
        val: (x, y) validation rows.
        n_out: classes (LUC) or proportions (SDM) per row.
        seeds: one probe per seed.
        cfg: optimiser, batch size, epochs and patience.
    """
    x_tr, (x_va, y_va) = train[0], val
    probes, gens = _seeded_probes(kind, x_tr.shape[1], n_out, seeds, cfg)
    stacked = StackedProbes(probes).to(x_tr.device)
    opt = torch.optim.Adam(stacked.parameters(), lr=cfg.lr)
    stopping = _StackedStopping(cfg.patience, len(seeds))
    x_va_all = x_va.unsqueeze(0).expand(len(seeds), *x_va.shape)
    y_va_all = y_va.unsqueeze(0).expand(len(seeds), *y_va.shape)
    for epoch in range(1, cfg.max_epochs + 1):
        _stacked_train_epoch(stacked, opt, task, train, gens, cfg.batch_size)
        per_batch = _stacked_val_losses(stacked, task, x_va_all, y_va_all, cfg.batch_size)
        if stopping.step(per_batch, stacked, epoch):
            break
    out = []
    for i, probe in enumerate(probes):
        fit = stopping.restore(i, probe)
        probe.to(x_tr.device).eval()
        out.append((probe, fit))
    return out


@contextmanager
def probe_threads(device: str | torch.device) -> Iterator[None]:
    """``PROBE_THREADS`` torch threads for the block on CPU; the caller's setting after."""
    before = torch.get_num_threads()
    cpu = torch.device(device).type == "cpu"
    if cpu and PROBE_THREADS:
        torch.set_num_threads(PROBE_THREADS)
    try:
        yield
    finally:
        if cpu:
            torch.set_num_threads(before)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch (CPU and CUDA) and numpy; restore the CPU and numpy RNG states on exit."""
    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(np_state)
