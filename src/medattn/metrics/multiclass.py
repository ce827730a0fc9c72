"""Multiclass metrics from class probabilities (torchmetrics underneath).

Per-class metrics are one-vs-rest. AUROC/AUPRC come from the probabilities; a class with no
positive (or no negative) item has an undefined AUROC/AUPRC (``nan``), and macro means skip it.
Threshold metrics use the arg-max class unless explicit predictions are passed. Macro averages
of precision/recall/F1/specificity run over the classes present in the labels or the
predictions (scikit-learn's default); balanced accuracy is the mean recall over classes present
in the labels.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    multiclass_confusion_matrix,
)

from medattn.errors import DataError

__all__ = ["MULTICLASS_METRICS", "multiclass_metrics", "multiclass_per_class", "multiclass_confusion"]

MULTICLASS_METRICS = (
    "accuracy", "balanced_accuracy", "macro_precision", "macro_recall", "macro_specificity",
    "macro_f1", "macro_auroc", "macro_auprc",
)


def _inputs(y_true: np.ndarray, prob: np.ndarray, pred: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(np.int64).reshape(-1)
    p = np.asarray(prob, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != len(y):
        raise DataError(f"probabilities must be an (items, classes) array with {len(y)} rows, got shape {p.shape}")
    if len(y) and (y.min() < 0 or y.max() >= p.shape[1]):
        raise DataError(f"labels must lie in 0..{p.shape[1] - 1} (one probability column per class)")
    k = np.argmax(p, axis=1) if pred is None else np.asarray(pred).astype(np.int64).reshape(-1)
    if k.shape != y.shape:
        raise DataError(f"predictions ({k.shape}) and labels ({y.shape}) differ in length")
    return y, p, k


def multiclass_confusion(y_true: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``num_classes × num_classes`` confusion matrix (rows = truth, columns = prediction)."""
    y = torch.as_tensor(np.asarray(y_true, dtype=np.int64).reshape(-1))
    k = torch.as_tensor(np.asarray(pred, dtype=np.int64).reshape(-1))
    return multiclass_confusion_matrix(k, y, num_classes=num_classes).numpy()


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b > 0 else 0.0


def _ranking(y_bin: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    if y_bin.min(initial=0) == y_bin.max(initial=0):
        return float("nan"), float("nan")
    s, t = torch.as_tensor(score), torch.as_tensor(y_bin.astype(np.int64))
    return float(binary_auroc(s, t)), float(binary_average_precision(s, t))


def multiclass_per_class(
    y_true: np.ndarray, prob: np.ndarray, class_names: list[str] | None = None,
    pred: np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
    """One-vs-rest metrics of every class.

    Args:
        y_true: integer labels ``0..C-1``.
        prob: ``(N, C)`` class probabilities.
        class_names: names in column order (default ``class_<k>``).
        pred: optional predicted classes (default: arg-max of ``prob``).

    Returns:
        ``{name: {precision, recall, specificity, f1, auroc, auprc, support, n_pred}}``.
    """
    y, p, k = _inputs(y_true, prob, pred)
    c = p.shape[1]
    names = class_names or [f"class_{i}" for i in range(c)]
    if len(names) != c:
        raise DataError(f"{len(names)} class names given for {c} probability columns")
    cm = multiclass_confusion(y, k, c) if len(y) else np.zeros((c, c), np.int64)
    out: dict[str, dict[str, float]] = {}
    n = cm.sum()
    for i, name in enumerate(names):
        tp = cm[i, i]
        fn = cm[i].sum() - tp
        fp = cm[:, i].sum() - tp
        tn = n - tp - fn - fp
        auroc, auprc = _ranking(y == i, p[:, i])
        out[name] = {
            "precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn),
            "specificity": _ratio(tn, tn + fp), "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "auroc": auroc, "auprc": auprc, "support": int(tp + fn), "n_pred": int(tp + fp),
        }
    return out


def multiclass_metrics(
    y_true: np.ndarray, prob: np.ndarray, pred: np.ndarray | None = None,
) -> dict[str, float]:
    """Headline multiclass metrics (see :data:`MULTICLASS_METRICS`), all from one call.

    Args:
        y_true: integer labels ``0..C-1``.
        prob: ``(N, C)`` class probabilities.
        pred: optional predicted classes (default: arg-max of ``prob``).
    """
    y, p, k = _inputs(y_true, prob, pred)
    per = multiclass_per_class(y, p, pred=k)
    rows = list(per.values())
    used = [r for r in rows if r["support"] > 0 or r["n_pred"] > 0]
    in_true = [r for r in rows if r["support"] > 0]

    def mean(vals: list[float]) -> float:
        arr = np.asarray(vals, dtype=np.float64)
        arr = arr[np.isfinite(arr)]
        return float(arr.mean()) if len(arr) else float("nan")

    return {
        "accuracy": _ratio(float((y == k).sum()), len(y)),
        "balanced_accuracy": mean([r["recall"] for r in in_true]),
        "macro_precision": mean([r["precision"] for r in used]),
        "macro_recall": mean([r["recall"] for r in used]),
        "macro_specificity": mean([r["specificity"] for r in used]),
        "macro_f1": mean([r["f1"] for r in used]),
        "macro_auroc": mean([r["auroc"] for r in rows]),
        "macro_auprc": mean([r["auprc"] for r in rows]),
    }
