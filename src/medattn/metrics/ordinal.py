"""Metrics for ordered classes (lesion grades): neighbouring grades are not equally wrong.

The headline is the quadratic-weighted Cohen's kappa (torchmetrics): a disagreement of ``d``
grades costs ``d²``, so calling a severe lesion healthy weighs nine times more than calling it
moderate. Accuracy and macro F1 treat every mistake alike and are reported beside it, with the
mean absolute grade error and the share of predictions within one grade of the truth.

Class ``k`` is grade ``k``: the class order of the bundle/recipe *is* the grade order.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.classification import multiclass_cohen_kappa, multiclass_f1_score

from medattn.errors import DataError

__all__ = ["ORDINAL_METRICS", "ordinal_metrics", "ordinal_predictions", "ordinal_confusion"]

ORDINAL_METRICS = ("accuracy", "macro_f1", "qwk", "linear_kappa", "mae_grade", "within_one")


def ordinal_predictions(prob: np.ndarray, rule: str = "argmax") -> np.ndarray:
    """Predicted grade of every row of ``prob`` (``N×K`` class probabilities).

    Args:
        prob: class probabilities, columns in grade order.
        rule: ``argmax`` (most likely grade) or ``median`` (the grade where the cumulative
            probability first reaches 0.5; minimises the expected absolute grade error).
    """
    p = np.asarray(prob, dtype=np.float64)
    if p.ndim != 2:
        raise DataError(f"probabilities must be an (items, grades) array, got shape {p.shape}")
    if rule == "argmax":
        return p.argmax(1)
    if rule == "median":
        cum = np.cumsum(p / np.maximum(p.sum(1, keepdims=True), 1e-12), axis=1)
        return np.minimum((cum < 0.5).sum(1), p.shape[1] - 1)
    raise DataError(f"unknown ordinal decision rule '{rule}'; use 'argmax' or 'median'")


def _inputs(y_true: np.ndarray, pred_or_prob: np.ndarray, num_classes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    y = np.asarray(y_true).astype(np.int64).reshape(-1)
    a = np.asarray(pred_or_prob)
    if a.ndim == 2:
        k = a.shape[1] if num_classes is None else num_classes
        pred = a.argmax(1).astype(np.int64)
    else:
        pred = a.astype(np.int64).reshape(-1)
        k = num_classes if num_classes is not None else int(max(y.max(initial=0), pred.max(initial=0)) + 1)
    if len(pred) != len(y):
        raise DataError(f"{len(pred)} predictions for {len(y)} labels; pass one prediction per item")
    if len(y) and (min(y.min(), pred.min()) < 0 or max(y.max(), pred.max()) >= k):
        raise DataError(f"grades must lie in 0..{k - 1}; got labels {sorted(set(y.tolist()))[:8]} "
                        f"and predictions {sorted(set(pred.tolist()))[:8]}")
    return y, pred, int(k)


def ordinal_confusion(y_true: np.ndarray, pred_or_prob: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """``K×K`` confusion matrix (rows = true grade, columns = predicted grade)."""
    y, pred, k = _inputs(y_true, pred_or_prob, num_classes)
    return np.bincount(y * k + pred, minlength=k * k).reshape(k, k)


def ordinal_metrics(y_true: np.ndarray, pred_or_prob: np.ndarray, num_classes: int | None = None) -> dict[str, float]:
    """Accuracy, macro F1, quadratic- and linear-weighted kappa, grade MAE and within-one accuracy.

    Args:
        y_true: true grades ``0..K-1``.
        pred_or_prob: predicted grades (``N``) or class probabilities (``N×K``, arg-max taken).
        num_classes: number of grades ``K`` (default: the probability columns, or the largest grade
            seen + 1).

    Returns:
        ``{accuracy, macro_f1, qwk, linear_kappa, mae_grade, within_one}``. Kappa is ``nan`` when
        it is undefined (truth and prediction both a single grade). Macro F1 averages the grades
        present in the labels or the predictions (scikit-learn's convention).
    """
    y, pred, k = _inputs(y_true, pred_or_prob, num_classes)
    if not len(y):
        return {m: float("nan") for m in ORDINAL_METRICS}
    ty, tp = torch.as_tensor(y), torch.as_tensor(pred)
    present = np.union1d(y, pred)
    per_f1 = multiclass_f1_score(tp, ty, num_classes=k, average="none").numpy()
    err = np.abs(pred - y)
    return {
        "accuracy": float((err == 0).mean()),
        "macro_f1": float(per_f1[present].mean()),
        "qwk": float(multiclass_cohen_kappa(tp, ty, num_classes=k, weights="quadratic")),
        "linear_kappa": float(multiclass_cohen_kappa(tp, ty, num_classes=k, weights="linear")),
        "mae_grade": float(err.mean()),
        "within_one": float((err <= 1).mean()),
    }
