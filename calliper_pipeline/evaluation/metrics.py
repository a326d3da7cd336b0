"""Test-set metrics of the downstream probes, as the authors' notebooks compute them.

- LUC (classification): accuracy and macro precision / recall / F1 (sklearn,
  ``zero_division=0``, macro over the classes present in truth or prediction).
- SDM (distributions), averaged over test areas: L1 = sum |p - q|, Chebyshev = max |p - q|,
  KL(p || q) = sum p (log p - log q) with 0 log 0 = 0 and q clamped below at :data:`KL_EPS`;
  p is the target, q the predicted proportions.

All values are raw fractions (the paper's tables show them x100).
"""

from __future__ import annotations

import numpy as np

LUC_METRICS = ("accuracy", "precision", "recall", "f1")
SDM_METRICS = ("l1", "chebyshev", "kl")
KL_EPS = 1e-12  # lower clamp of predicted proportions inside log q


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy and macro precision, recall, F1 (sklearn, zero_division=0).

    Args:
        y_true: (N,) true class indices.
        y_pred: (N,) predicted class indices.
    """
    # imported here: sklearn costs ~1.5 s to import, and a run whose probes are all cache
    # hits never calls this
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

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

    Raises:
        ValueError: ``target`` and ``pred`` are not (N, C) arrays of one shape.
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
