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

__all__ = ["binary_metrics", "binary_confusion", "BINARY_METRICS"]

BINARY_METRICS = (
    "accuracy", "balanced_accuracy", "precision", "recall", "specificity", "f1", "auroc", "auprc",
)


def _safe_div(a: float, b: float) -> float:
    return float(a / b) if b > 0 else 0.0


def binary_confusion(y_true: np.ndarray, prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """2×2 confusion matrix ``[[tn, fp], [fn, tp]]`` at ``prob >= threshold``."""
    t = torch.as_tensor(np.asarray(prob, dtype=np.float64))
    y = torch.as_tensor(np.asarray(y_true, dtype=np.int64))
    return binary_confusion_matrix(t, y, threshold=float(threshold)).numpy()


def binary_metrics(
    y_true: np.ndarray, prob: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """Accuracy, balanced accuracy, precision, recall (sensitivity), specificity, F1, AUROC, AUPRC.

    AUROC/AUPRC are ``nan`` when only one class is present (undefined, not 0.5).
    """
    y = np.asarray(y_true).astype(np.int64).reshape(-1)
    p = np.asarray(prob, dtype=np.float64).reshape(-1)
    if y.shape != p.shape:
        raise ValueError(f"labels ({y.shape}) and probabilities ({p.shape}) differ in length")
    (tn, fp), (fn, tp) = binary_confusion(y, p, threshold).tolist()
    recall = _safe_div(tp, tp + fn)
    spec = _safe_div(tn, tn + fp)
    precision = _safe_div(tp, tp + fp)
    both = 0 < y.sum() < len(y)
    pt, yt = torch.as_tensor(p), torch.as_tensor(y)
    return {
        "accuracy": _safe_div(tp + tn, len(y)),
        "balanced_accuracy": (recall + spec) / 2 if both else float("nan"),
        "precision": precision,
        "recall": recall,
        "specificity": spec,
        "f1": _safe_div(2 * tp, 2 * tp + fp + fn),
        "auroc": float(binary_auroc(pt, yt)) if both else float("nan"),
        "auprc": float(binary_average_precision(pt, yt)) if both else float("nan"),
    }
