"""Classification metrics from probabilities (torchmetrics underneath).

AUROC and AUPRC always come from probabilities, never from hard labels; threshold metrics
use an explicit decision threshold (chosen on validation, see :mod:`medattn.metrics.threshold`).
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    binary_confusion_matrix,
)

from medattn.errors import DataError

__all__ = ["binary_metrics", "binary_confusion", "BINARY_METRICS"]

BINARY_METRICS = (
    "accuracy", "balanced_accuracy", "precision", "recall", "specificity", "f1", "auroc", "auprc",
)


def _safe_div(a: float, b: float) -> float:
    return float(a / b) if b > 0 else 0.0


def binary_confusion(y_true: np.ndarray, prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """2×2 confusion matrix ``[[tn, fp], [fn, tp]]`` at ``prob >= threshold``.

    The comparison is ``>=`` (like ``sklearn.metrics.roc_curve`` thresholds, which are score
    values): an item scoring exactly the threshold is positive.
    """
    hard = (np.asarray(prob, dtype=np.float64) >= float(threshold)).astype(np.int64)
    t = torch.as_tensor(hard)
    y = torch.as_tensor(np.asarray(y_true, dtype=np.int64))
    return binary_confusion_matrix(t, y).numpy()


def binary_metrics(
    y_true: np.ndarray, prob: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """Accuracy, balanced accuracy, precision, recall (sensitivity), specificity, F1, AUROC, AUPRC.

    AUROC is ``nan`` when only one class is present (undefined, not 0.5); AUPRC is 1.0 when
    every item is positive and ``nan`` when none is (recall undefined). Balanced accuracy is the
    mean recall over the classes present in ``y_true`` (scikit-learn's definition).
    """
    y = np.asarray(y_true).astype(np.int64).reshape(-1)
    p = np.asarray(prob, dtype=np.float64).reshape(-1)
    if y.shape != p.shape:
        raise DataError(f"labels ({y.shape}) and probabilities ({p.shape}) differ in length; "
                        "pass one probability per item")
    (tn, fp), (fn, tp) = binary_confusion(y, p, threshold).tolist()
    recall = _safe_div(tp, tp + fn)
    spec = _safe_div(tn, tn + fp)
    precision = _safe_div(tp, tp + fp)
    n_pos = int(y.sum())
    both = 0 < n_pos < len(y)
    present = [r for r, n in ((recall, n_pos), (spec, len(y) - n_pos)) if n > 0]
    pt, yt = torch.as_tensor(p), torch.as_tensor(y)
    auprc = float(binary_average_precision(pt, yt)) if both else (
        1.0 if len(y) and n_pos == len(y) else float("nan"))
    return {
        "accuracy": _safe_div(tp + tn, len(y)),
        "balanced_accuracy": float(np.mean(present)) if present else float("nan"),
        "precision": precision,
        "recall": recall,
        "specificity": spec,
        "f1": _safe_div(2 * tp, 2 * tp + fp + fn),
        "auroc": float(binary_auroc(pt, yt)) if both else float("nan"),
        "auprc": auprc,
    }
