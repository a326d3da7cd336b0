"""The evaluation loop: tasks x split protocols x probes x seeds on frozen features.

:func:`evaluate_features` runs, for each task given (LUC and/or SDM), each protocol in
``cfg.protocols`` (default ``("random", "blocks")``), each probe in ``cfg.probes`` and each
seed in ``cfg.seeds``, and returns an :class:`EvaluationResult` whose
:meth:`~EvaluationResult.to_frame` is the tidy results table (one row per encoder, protocol,
task, probe and metric). :func:`evaluate_feature_fn` does the same from a feature function, the
one "features -> probes -> tidy table" step every caller shares.

Protocols (:mod:`~calliper_pipeline.evaluation.splits`):

- ``"random"``: the paper's fixed split, the same for every seed; the seeds train side by side
  as one stacked model, so the numbers are exactly the single-protocol numbers of before.
- ``"blocks"``: whole spatial blocks of a 10 x 10 grid over the points' extent (metres in the
  metric CRS) go to test and validation, a fresh draw per seed, the same for every encoder for
  a given seed and set of points; each seed trains on its own split.

Standard deviations are over seeds with ``ddof=1`` (pandas' ``describe()`` in the notebooks);
0.0 for a single seed. Metric values are raw fractions; ``*_x100`` columns are in the paper's
tables' units.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from calliper_pipeline.config import ProbeConfig
from calliper_pipeline.evaluation.data import LANDUSE_TASK, SOCIOECONOMIC_TASK, LabelledPoints
from calliper_pipeline.evaluation.metrics import classification_metrics, distribution_metrics
from calliper_pipeline.evaluation.multisplit import fit_probes_per_split
from calliper_pipeline.evaluation.probes import ProbeFit, fit_probes, probe_threads
from calliper_pipeline.evaluation.splits import (
    PROTOCOLS,
    RANDOM,
    Split,
    fixed_split,
    protocol_split,
)

logger = logging.getLogger(__name__)

TASKS = (LANDUSE_TASK, SOCIOECONOMIC_TASK)
FRAME_COLUMNS = ("encoder", "protocol", "task", "probe", "metric", "mean", "std", "n_seeds")

FeatureFn = Callable[[LabelledPoints], np.ndarray]  # points -> (N, D) features in their order


@dataclass(frozen=True)
class ProbeRun:
    """Test metrics of one (protocol, task, probe, seed) run, raw fractions (not x100).

    Attributes:
        split_sizes: (train, val, test) rows of this run's split.
        seconds: wall seconds of the run (a stacked fit's time shared among its seeds).
    """

    task: str
    probe: str
    seed: int
    metrics: Mapping[str, float]
    fit: ProbeFit
    seconds: float
    protocol: str = RANDOM
    split_sizes: tuple[int, int, int] = (0, 0, 0)


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


def _fit_and_test(
    probe: str,
    points: LabelledPoints,
    data: tuple[Tensor, Tensor],
    splits: Sequence[Split],
    protocol: str,
    cfg: ProbeConfig,
) -> list[ProbeRun]:
    """Train ``probe`` for every seed side by side and test each restored probe.

    ``splits``: one split shared by every seed (:func:`fit_probes`, bit for bit the paper
    protocol's numbers) or one per seed (:func:`fit_probes_per_split`).
    """
    x, y = data
    seeds = tuple(cfg.seeds)
    shared = len(splits) == 1
    per_seed = [splits[0]] * len(seeds) if shared else list(splits)
    start = time.perf_counter()
    with probe_threads(x.device):
        if shared:
            tr, va = (torch.from_numpy(i).to(x.device) for i in splits[0][:2])
            fitted = fit_probes(
                probe, points.task, (x[tr], y[tr]), (x[va], y[va]), points.n_classes, seeds, cfg
            )
        else:
            fitted = fit_probes_per_split(
                probe, points.task, data, [s[:2] for s in per_seed], points.n_classes, seeds, cfg
            )
    seconds = (time.perf_counter() - start) / max(len(seeds), 1)
    runs = []
    for seed, split, (model, fit) in zip(seeds, per_seed, fitted, strict=True):
        te = torch.from_numpy(split[2]).to(x.device)
        metrics = _test_metrics(points.task, model, x[te], y[te])
        sizes = (len(split[0]), len(split[1]), len(split[2]))
        runs.append(ProbeRun(points.task, probe, seed, metrics, fit, seconds, protocol, sizes))
        logger.debug("%s %s %s seed %d: %s (%s)", protocol, points.task, probe, seed, metrics, fit)
    return runs


def evaluate_task(
    features: np.ndarray,
    points: LabelledPoints,
    cfg: ProbeConfig | None = None,
    device: str | torch.device = "cpu",
    protocol: str = RANDOM,
) -> tuple[ProbeRun, ...]:
    """Every probe in ``cfg.probes`` x every seed in ``cfg.seeds`` on one task, one protocol.

    Args:
        features: (N, D) float features, one row per point, in the points' order.
        points: the task's labelled points (``points.task`` picks the loss and metrics; the
            ``"blocks"`` protocol reads their metric coordinates ``x_m``/``y_m``).
        cfg: probe configuration (the paper's defaults).
        device: where the probes train.
        protocol: ``"random"`` (one split, all seeds stacked) or ``"blocks"`` (a block split
            per seed).

    Raises:
        ValueError: unknown task or protocol, features of the wrong shape or not finite, or
            too few non-empty blocks for a block split.
    """
    cfg = cfg or ProbeConfig()
    if points.task not in TASKS:
        raise ValueError(f"unknown task {points.task!r}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    feats = np.asarray(features)
    if feats.ndim != 2 or len(feats) != len(points):
        raise ValueError(f"features must be ({len(points)}, D), got {feats.shape}")
    if not np.isfinite(feats).all():
        raise ValueError("features contain NaN or infinite values")
    x = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)).to(device)
    data = (x, _targets_tensor(points).to(device))
    # the random split serves every seed; the block protocol draws one split per seed
    if protocol == RANDOM:
        splits = [fixed_split(len(points), cfg)]
    else:
        splits = [protocol_split(protocol, points.x_m, points.y_m, s, cfg) for s in cfg.seeds]
    runs: list[ProbeRun] = []
    for probe in cfg.probes:
        runs.extend(_fit_and_test(probe, points, data, splits, protocol, cfg))
    return tuple(runs)


def _std(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


@dataclass(frozen=True)
class EvaluationResult:
    """Per-seed runs and their summary for one encoder (or baseline), every protocol.

    Attributes:
        encoder: the label carried into the frames.
        runs: every (protocol, task, probe, seed) run.
        split_sizes: task -> (train, val, test) rows of the paper's random split (block
            splits vary by seed: see each run's ``split_sizes`` or :meth:`runs_frame`).
        seconds: wall seconds of the whole evaluation.
    """

    encoder: str
    runs: tuple[ProbeRun, ...]
    split_sizes: Mapping[str, tuple[int, int, int]]
    seconds: float

    @property
    def protocols(self) -> tuple[str, ...]:
        """The protocols present, in run order."""
        return tuple(dict.fromkeys(r.protocol for r in self.runs))

    def runs_frame(self) -> pd.DataFrame:
        """One row per (protocol, task, probe, seed, metric): the raw value, the restored
        epoch and the run's split sizes (n_train, n_val, n_test)."""
        rows = [
            {"encoder": self.encoder, "protocol": r.protocol, "task": r.task, "probe": r.probe}
            | {"seed": r.seed, "metric": m, "value": v, "best_epoch": r.fit.best_epoch}
            | dict(zip(("n_train", "n_val", "n_test"), r.split_sizes, strict=True))
            for r in self.runs
            for m, v in r.metrics.items()
        ]
        return pd.DataFrame(rows)

    def to_frame(self) -> pd.DataFrame:
        """Tidy summary: encoder, protocol, task, probe, metric, mean, std, n_seeds,
        mean_x100, std_x100.

        ``mean``/``std`` are fractions; ``*_x100`` are in the paper's tables' units.
        """
        per_seed = self.runs_frame()
        if per_seed.empty:
            return pd.DataFrame(columns=[*FRAME_COLUMNS, "mean_x100", "std_x100"])
        keys = list(FRAME_COLUMNS[:5])
        out = (
            per_seed.groupby(keys, sort=False)["value"]
            .agg(mean="mean", std=_std, n_seeds="count")
            .reset_index()
        )
        out["mean_x100"] = out["mean"] * 100.0
        out["std_x100"] = out["std"] * 100.0
        return out

    def _values(self, task: str, probe: str, metric: str, protocol: str) -> np.ndarray:
        vals = [
            r.metrics[metric]
            for r in self.runs
            if (r.protocol, r.task, r.probe) == (protocol, task, probe)
        ]
        if not vals:
            raise KeyError(f"no runs for protocol={protocol!r}, task={task!r}, probe={probe!r}")
        return np.asarray(vals, np.float64)

    def mean(self, task: str, probe: str, metric: str, protocol: str = RANDOM) -> float:
        """Mean over seeds, as a fraction."""
        return float(self._values(task, probe, metric, protocol).mean())

    def mean_x100(self, task: str, probe: str, metric: str, protocol: str = RANDOM) -> float:
        """Mean over seeds in the paper's x100 convention."""
        return 100.0 * self.mean(task, probe, metric, protocol)

    def std_x100(self, task: str, probe: str, metric: str, protocol: str = RANDOM) -> float:
        """Standard deviation over seeds (ddof=1) in the paper's x100 convention."""
        return 100.0 * _std(self._values(task, probe, metric, protocol))


def evaluate_features(
    features_luc: np.ndarray | None,
    luc: LabelledPoints | None,
    features_sdm: np.ndarray | None,
    sdm: LabelledPoints | None,
    cfg: ProbeConfig | None = None,
    name: str = "encoder",
    device: str | torch.device = "cpu",
    protocols: Sequence[str] | None = None,
) -> EvaluationResult:
    """The probes on precomputed features for LUC and/or SDM under every protocol.

    Pass ``None`` for both the features and the points of a task the city lacks.

    Args:
        features_luc: (N_luc, D) features of ``luc``'s points, in its order.
        luc: land-use points (task ``"luc"``).
        features_sdm: (N_sdm, D) features of ``sdm``'s points, in its order.
        sdm: socio-economic points (task ``"sdm"``).
        cfg: probe configuration (the paper's defaults; ``cfg.protocols`` both protocols).
        name: encoder label carried into the result frame.
        device: where the probes train ("cpu" is fast enough: D=128, 20 runs in seconds).
        protocols: overrides ``cfg.protocols``: ``"random"`` and/or ``"blocks"``.

    Raises:
        ValueError: no task given, features without points (or the reverse), points of the
            wrong task, or any :func:`evaluate_task` error.
    """
    cfg = cfg or ProbeConfig()
    chosen = tuple(cfg.protocols if protocols is None else protocols)
    if not chosen or any(p not in PROTOCOLS for p in chosen):
        raise ValueError(f"protocols must be a non-empty subset of {PROTOCOLS}, got {chosen}")
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
        for protocol in chosen:
            runs.extend(evaluate_task(feats, points, cfg, device, protocol))
        train, val, test = fixed_split(len(points), cfg)
        sizes[task] = (len(train), len(val), len(test))
    if not runs:
        raise ValueError("nothing to evaluate: no task was given")
    return EvaluationResult(name, tuple(runs), sizes, time.perf_counter() - start)


def evaluate_feature_fn(
    features: FeatureFn,
    landuse: LabelledPoints | None,
    socioeconomic: LabelledPoints | None,
    cfg: ProbeConfig | None = None,
    name: str = "encoder",
    device: str | torch.device = "cpu",
    protocols: Sequence[str] | None = None,
) -> EvaluationResult:
    """Features -> probes -> result for a city's sets: the one step every caller shares.

    ``features`` is called once per set given (``None`` sets are skipped); the tidy table is
    ``evaluate_feature_fn(...).to_frame()``.

    Args:
        features: points -> (N, D) features in the points' order (a trained encoder's
            embedding, a baseline builder...).
        landuse: the city's land-use points, or None.
        socioeconomic: the city's socio-economic points, or None.
        cfg: probe configuration (the paper's defaults, both protocols).
        name: encoder label carried into the frames.
        device: where the probes train.
        protocols: overrides ``cfg.protocols``.
    """
    return evaluate_features(
        features(landuse) if landuse is not None else None,
        landuse,
        features(socioeconomic) if socioeconomic is not None else None,
        socioeconomic,
        cfg,
        name=name,
        device=device,
        protocols=protocols,
    )
