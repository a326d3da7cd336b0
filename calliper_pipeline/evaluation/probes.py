"""Downstream probes on frozen location features: the paper's evaluation protocol.

What the authors' notebooks (xlwang233/CaLLiPer ``luc.ipynb``, ``sdm.ipynb``) do, and this module
does the same:

- **Features** are the frozen encoder's raw output cast to float32: no L2 normalisation, no
  standardisation (the notebooks feed ``loc_enc(coords).float()`` straight into the probe; the
  L2 normalisation lives only inside the contrastive loss). Baseline features are fed raw too.
- **Split**: ``train_test_split(test_size=0.2, random_state=42)`` over the rows in file order,
  then 10 % of the remainder as validation (``random_state=42``); the same split for every seed.
- **Probes**: ``Linear(D, C)`` or ``Linear(D, 64) -> ReLU -> Linear(64, C)``; Adam (lr 1e-3),
  shuffled mini-batches of 128, at most 300 epochs.
- **Early stopping**: after each epoch the validation loss is the mean of the per-batch losses
  over consecutive batches of 128 (the notebooks' DataLoader average, which weighs a short last
  batch like a full one); only a strictly lower loss counts as an improvement; training stops
  after ``patience`` (10) epochs without one; the best-validation weights are restored for the
  test.
- **Losses**: LUC cross-entropy; SDM ``KLDivLoss(reduction="batchmean")`` of ``log_softmax``
  outputs against the target proportions.
- **Metrics** (test set): LUC accuracy and macro precision / recall / F1 (sklearn,
  ``zero_division=0``, macro over the classes present in truth or prediction, as the notebooks'
  call). SDM, averaged over test areas: L1 = sum |p - q|, Chebyshev = max |p - q|, and
  KL(p || q) = sum p (log p - log q) with 0 log 0 = 0 and q clamped below at ``KL_EPS``; p is
  the target, q = softmax of the probe output.
- **Seeds** 42, 24, 7, 0, 100: before each run ``torch.manual_seed`` and ``np.random.seed``; the
  probe is initialised, then each epoch's shuffle is drawn from torch's CPU generator exactly as
  ``DataLoader(shuffle=True)`` and an unshuffled validation loader draw it, so that with the
  same features a run repeats the notebook's runs draw for draw. The RNG states are saved and
  restored around each run, so the caller's state is untouched. (The authors' SDM notebook does
  not seed its runs; we do.) Standard deviations are over seeds with ``ddof=1`` (pandas'
  ``describe()`` in the notebooks); 0.0 for a single seed.

Speed: the five seeds of a (task, probe) pair train side by side as one stacked model
(:func:`fit_probes`), each with exactly its own draws (initialisation, shuffles), so a run
repeats its single-seed run up to float rounding at a fraction of the Python overhead.
:func:`fit_probe` keeps the one-model loop the DataLoader parity test checks.

Threads: the probes' ops are tiny, so one intra-op thread is the fastest setting; extra threads
only add synchronisation, which costs an order of magnitude when the cores are shared with other
work (a London evaluation took minutes instead of seconds with two threads beside another job).
So :func:`evaluate_task` trains CPU probes with ``PROBE_THREADS`` intra-op threads and restores
the caller's setting afterwards.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, precision_recall_fscore_support
from sklearn.model_selection import train_test_split
from torch import Tensor, nn

from calliper_pipeline.config import ProbeConfig
from calliper_pipeline.evaluation.data import LANDUSE_TASK, SOCIOECONOMIC_TASK, LabelledPoints

logger = logging.getLogger(__name__)

TASKS = (LANDUSE_TASK, SOCIOECONOMIC_TASK)
LUC_METRICS = ("accuracy", "precision", "recall", "f1")
SDM_METRICS = ("l1", "chebyshev", "kl")
PROBE_THREADS = 1  # torch intra-op threads while CPU probes train (restored afterwards)
KL_EPS = 1e-12  # lower clamp of predicted proportions inside log q
FRAME_COLUMNS = ("encoder", "task", "probe", "metric", "mean", "std", "n_seeds")


def fixed_split(
    n: int, cfg: ProbeConfig | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) row indices, int64, in the order sklearn returns them.

    London LUC (6,697 rows) gives 4,821 / 536 / 1,340; SDM (4,994 rows) 3,595 / 400 / 999.
    """
    cfg = cfg or ProbeConfig()
    if n < 3:
        raise ValueError(f"need at least 3 rows to split, got {n}")
    rows = np.arange(n, dtype=np.int64)
    rest, test = train_test_split(rows, test_size=cfg.test_fraction, random_state=cfg.split_seed)
    train, val = train_test_split(rest, test_size=cfg.val_fraction, random_state=cfg.split_seed)
    return np.asarray(train), np.asarray(val), np.asarray(test)


def build_probe(kind: str, in_dim: int, n_out: int, hidden: int = 64) -> nn.Module:
    """``"linear"``: Linear(D, C); ``"mlp"``: Linear(D, hidden) -> ReLU -> Linear(hidden, C)."""
    if kind == "linear":
        return nn.Linear(in_dim, n_out)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, n_out))
    raise ValueError(f"unknown probe {kind!r}; expected 'linear' or 'mlp'")


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy and macro precision, recall, F1 (sklearn, zero_division=0)."""
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, average="macro", zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
    }


def distribution_metrics(
    target: np.ndarray, pred: np.ndarray, eps: float = KL_EPS
) -> dict[str, float]:
    """Mean over rows of L1, Chebyshev and KL(target || pred) for (N, C) proportions.

    KL uses 0 log 0 = 0 (terms with target 0 vanish) and ``log(max(pred, eps))``.
    """
    p = np.asarray(target, np.float64)
    q = np.asarray(pred, np.float64)
    if p.shape != q.shape or p.ndim != 2:
        raise ValueError(f"target and pred must be (N, C) of one shape, got {p.shape}, {q.shape}")
    diff = np.abs(p - q)
    log_ratio = np.log(np.where(p > 0, p, 1.0)) - np.log(np.maximum(q, eps))
    kl = np.where(p > 0, p * log_ratio, 0.0).sum(axis=1)
    return {
        "l1": float(diff.sum(axis=1).mean()),
        "chebyshev": float(diff.max(axis=1).mean()),
        "kl": float(kl.mean()),
    }


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
    behind ``randperm``. ``tests/test_evaluate.py`` checks the equivalence with DataLoader.
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


def fit_probes(
    kind: str,
    task: str,
    train: tuple[Tensor, Tensor],
    val: tuple[Tensor, Tensor],
    n_out: int,
    seeds: Sequence[int],
    cfg: ProbeConfig,
) -> list[tuple[nn.Module, ProbeFit]]:
    """:func:`fit_probe` for every seed at once; returns each seed's restored probe and fit.

    Seed s's run draws what it would draw alone inside :func:`seeded`: its probe is built
    there, and its shuffles come from a private generator holding the global generator's state
    right after that build (the only later draws of a run are its loaders' draws). The probes
    train as one :class:`StackedProbes`; a probe whose patience has run out is left out of
    the early-stopping bookkeeping (its best weights are kept) until every probe has stopped.
    """
    (x_tr, y_tr), (x_va, y_va) = train, val
    probes, gens = [], []
    for seed in seeds:
        with seeded(seed):
            probes.append(build_probe(kind, x_tr.shape[1], n_out, cfg.mlp_hidden))
            gens.append(torch.Generator().set_state(torch.get_rng_state()))
    stacked = StackedProbes(probes).to(x_tr.device)
    opt = torch.optim.Adam(stacked.parameters(), lr=cfg.lr)
    n_seeds, bs = len(seeds), cfg.batch_size
    best_loss = [math.inf] * n_seeds
    best_epoch = [0] * n_seeds
    best_state: list[dict[str, Tensor] | None] = [None] * n_seeds
    bad = [0] * n_seeds
    val_losses: list[list[float]] = [[] for _ in seeds]
    active = [True] * n_seeds
    x_va_all = x_va.unsqueeze(0).expand(n_seeds, *x_va.shape)
    y_va_all = y_va.unsqueeze(0).expand(n_seeds, *y_va.shape)
    for epoch in range(1, cfg.max_epochs + 1):
        stacked.train()
        perm = torch.stack([_loader_permutation(len(x_tr), g) for g in gens]).to(x_tr.device)
        for start in range(0, perm.shape[1], bs):
            rows = perm[:, start : start + bs]  # (S, b)
            flat = rows.reshape(-1)
            xb = x_tr.index_select(0, flat).view(*rows.shape, -1)
            yb = y_tr.index_select(0, flat).view(*rows.shape, *y_tr.shape[1:])
            loss = _stacked_losses(task, stacked(xb), yb).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        for g in gens:
            _draw_loader_seed(g)  # the validation DataLoader's iterator draws one too
        stacked.eval()
        with torch.no_grad():
            per_batch = torch.stack(
                [
                    _stacked_losses(task, stacked(x_va_all[:, s : s + bs]), y_va_all[:, s : s + bs])
                    for s in range(0, len(x_va), bs)
                ],
                dim=1,
            ).tolist()  # (S, batches) float32 values, as _batched_loss's .item()s
        for i in range(n_seeds):
            if not active[i]:
                continue
            loss_i = float(np.mean(per_batch[i]))
            val_losses[i].append(loss_i)
            if loss_i < best_loss[i]:  # strict, NaN never improves (as EarlyStopping)
                best_loss[i], best_epoch[i], bad[i] = loss_i, epoch, 0
                best_state[i] = stacked.probe_state(i)
            else:
                bad[i] += 1
                active[i] = bad[i] < cfg.patience
        if not any(active):
            break
    out = []
    for i, probe in enumerate(probes):
        state = best_state[i]
        if state is None:
            raise RuntimeError("validation loss was never finite; no weights to restore")
        probe.load_state_dict(state)
        probe.to(x_tr.device).eval()
        fit = ProbeFit(best_epoch[i], len(val_losses[i]), best_loss[i], tuple(val_losses[i]))
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


@dataclass(frozen=True)
class ProbeRun:
    """Test metrics of one (task, probe, seed) run, raw fractions (not x100)."""

    task: str
    probe: str
    seed: int
    metrics: Mapping[str, float]
    fit: ProbeFit
    seconds: float


def _targets_tensor(points: LabelledPoints) -> Tensor:
    if points.task == LANDUSE_TASK:
        return torch.from_numpy(np.asarray(points.targets, np.int64))
    return torch.from_numpy(np.asarray(points.targets, np.float32))


def _test_metrics(task: str, model: nn.Module, x: Tensor, y: Tensor) -> dict[str, float]:
    with torch.no_grad():
        logits = model(x)
    if task == LANDUSE_TASK:
        return classification_metrics(y.cpu().numpy(), logits.argmax(dim=1).cpu().numpy())
    probs = torch.softmax(logits.double(), dim=1)
    return distribution_metrics(y.cpu().numpy(), probs.cpu().numpy())


def evaluate_task(
    features: np.ndarray,
    points: LabelledPoints,
    cfg: ProbeConfig | None = None,
    device: str | torch.device = "cpu",
) -> tuple[ProbeRun, ...]:
    """Every probe in ``cfg.probes`` x every seed in ``cfg.seeds`` on one task.

    Args:
        features: (N, D) float features, one row per point, in the points' order.
        points: the task's labelled points (``points.task`` picks the loss and metrics).
    """
    cfg = cfg or ProbeConfig()
    if points.task not in TASKS:
        raise ValueError(f"unknown task {points.task!r}")
    feats = np.asarray(features)
    if feats.ndim != 2 or len(feats) != len(points):
        raise ValueError(f"features must be ({len(points)}, D), got {feats.shape}")
    if not np.isfinite(feats).all():
        raise ValueError("features contain NaN or infinite values")
    x = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)).to(device)
    y = _targets_tensor(points).to(device)
    tr, va, te = (torch.from_numpy(i).to(device) for i in fixed_split(len(points), cfg))
    runs = []
    for probe in cfg.probes:
        start = time.perf_counter()
        with probe_threads(device):
            fitted = fit_probes(
                probe, points.task, (x[tr], y[tr]), (x[va], y[va]), points.n_classes, cfg.seeds, cfg
            )
        seconds = (time.perf_counter() - start) / max(len(cfg.seeds), 1)
        for seed, (model, fit) in zip(cfg.seeds, fitted, strict=True):
            metrics = _test_metrics(points.task, model, x[te], y[te])
            runs.append(ProbeRun(points.task, probe, seed, metrics, fit, seconds))
            logger.debug("%s %s seed %d: %s (%s)", points.task, probe, seed, metrics, fit)
    return tuple(runs)


def _std(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


@dataclass(frozen=True)
class EvaluationResult:
    """Per-seed runs and their summary for one encoder (or baseline)."""

    encoder: str
    runs: tuple[ProbeRun, ...]
    split_sizes: Mapping[str, tuple[int, int, int]]  # task -> (train, val, test)
    seconds: float

    def runs_frame(self) -> pd.DataFrame:
        """One row per (task, probe, seed, metric) with the raw value."""
        rows = [
            {"encoder": self.encoder, "task": r.task, "probe": r.probe, "seed": r.seed}
            | {"metric": m, "value": v, "best_epoch": r.fit.best_epoch}
            for r in self.runs
            for m, v in r.metrics.items()
        ]
        return pd.DataFrame(rows)

    def to_frame(self) -> pd.DataFrame:
        """Tidy summary: encoder, task, probe, metric, mean, std, n_seeds, mean_x100, std_x100.

        ``mean``/``std`` are fractions; ``*_x100`` are in the paper's tables' units.
        """
        per_seed = self.runs_frame()
        if per_seed.empty:
            return pd.DataFrame(columns=[*FRAME_COLUMNS, "mean_x100", "std_x100"])
        keys = ["encoder", "task", "probe", "metric"]
        out = (
            per_seed.groupby(keys, sort=False)["value"]
            .agg(mean="mean", std=_std, n_seeds="count")
            .reset_index()
        )
        out["mean_x100"] = out["mean"] * 100.0
        out["std_x100"] = out["std"] * 100.0
        return out

    def _values(self, task: str, probe: str, metric: str) -> np.ndarray:
        vals = [r.metrics[metric] for r in self.runs if (r.task, r.probe) == (task, probe)]
        if not vals:
            raise KeyError(f"no runs for task={task!r}, probe={probe!r}")
        return np.asarray(vals, np.float64)

    def mean(self, task: str, probe: str, metric: str) -> float:
        """Mean over seeds, as a fraction."""
        return float(self._values(task, probe, metric).mean())

    def mean_x100(self, task: str, probe: str, metric: str) -> float:
        """Mean over seeds in the paper's x100 convention."""
        return 100.0 * self.mean(task, probe, metric)

    def std_x100(self, task: str, probe: str, metric: str) -> float:
        """Standard deviation over seeds (ddof=1) in the paper's x100 convention."""
        return 100.0 * _std(self._values(task, probe, metric))


def evaluate_features(
    features_luc: np.ndarray | None,
    luc: LabelledPoints | None,
    features_sdm: np.ndarray | None,
    sdm: LabelledPoints | None,
    cfg: ProbeConfig | None = None,
    name: str = "encoder",
    device: str | torch.device = "cpu",
) -> EvaluationResult:
    """The paper's protocol on precomputed features for LUC and/or SDM.

    Pass ``None`` for both the features and the points of a task the city lacks.

    Args:
        features_luc: (N_luc, D) features of ``luc``'s points, in its order.
        luc: land-use points (task ``"luc"``).
        features_sdm: (N_sdm, D) features of ``sdm``'s points, in its order.
        sdm: socio-economic points (task ``"sdm"``).
        cfg: probe configuration (the paper's defaults).
        name: encoder label carried into the result frame.
        device: where the probes train ("cpu" is fast enough: D=128, 20 runs in seconds).
    """
    cfg = cfg or ProbeConfig()
    start = time.perf_counter()
    runs: list[ProbeRun] = []
    sizes: dict[str, tuple[int, int, int]] = {}
    for task, feats, points in (
        (LANDUSE_TASK, features_luc, luc),
        (SOCIOECONOMIC_TASK, features_sdm, sdm),
    ):
        if (feats is None) != (points is None):
            raise ValueError(f"{task}: give both features and points, or neither")
        if feats is None or points is None:
            continue
        if points.task != task:
            raise ValueError(f"points given for {task} are of task {points.task!r}")
        runs.extend(evaluate_task(feats, points, cfg, device))
        train, val, test = fixed_split(len(points), cfg)
        sizes[task] = (len(train), len(val), len(test))
    if not runs:
        raise ValueError("nothing to evaluate: no task was given")
    return EvaluationResult(name, tuple(runs), sizes, time.perf_counter() - start)
