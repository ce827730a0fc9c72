"""Decision thresholds chosen on validation data, then applied unchanged to test."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_curve

from medattn.errors import ConfigError, DataError

__all__ = ["choose_threshold", "choose_thresholds"]


def choose_threshold(
    y_true: np.ndarray, prob: np.ndarray, method: str = "youden", target: float | None = None
) -> float:
    """Pick a threshold on *validation* predictions.

    Args:
        method: ``youden`` (max sensitivity + specificity − 1), ``sensitivity`` (highest
            threshold reaching ``target`` sensitivity) or ``specificity`` (lowest threshold
            reaching ``target`` specificity).
    """
    y = np.asarray(y_true).astype(int).reshape(-1)
    p = np.asarray(prob, dtype=np.float64).reshape(-1)
    if y.min() == y.max():
        return 0.5
    fpr, tpr, thr = roc_curve(y, p)
    thr = np.clip(thr, 0.0, 1.0)
    if method == "youden":
        k = int(np.argmax(tpr - fpr))
    elif method == "sensitivity":
        k = int(np.argmax(tpr >= (target if target is not None else 0.9)))
    elif method == "specificity":
        ok = np.nonzero(1 - fpr >= (target if target is not None else 0.9))[0]
        k = int(ok[-1]) if len(ok) else 0
    else:
        raise ConfigError(f"unknown threshold method '{method}'; use youden, sensitivity or specificity")
    return float(thr[k])


def choose_thresholds(
    y_true: np.ndarray, prob: np.ndarray, method: str = "youden", target: float | None = None
) -> list[float]:
    """One threshold per column of multilabel *validation* predictions ``(N, L)``.

    A finding whose validation labels hold a single class keeps 0.5.
    """
    y = np.asarray(y_true)
    p = np.asarray(prob, dtype=np.float64)
    if y.ndim != 2 or y.shape != p.shape:
        raise DataError(f"multilabel labels {y.shape} and probabilities {p.shape} must be equal (N, L) arrays")
    return [choose_threshold(y[:, k], p[:, k], method, target) for k in range(p.shape[1])]
