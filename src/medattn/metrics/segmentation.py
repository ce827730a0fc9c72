"""Pixel-level segmentation metrics: Dice, IoU, sensitivity, specificity, pixel accuracy.

Binary metrics treat every non-zero pixel as foreground, so instance label images can be passed
as they are. Counts come from torchmetrics' stat scores. Empty masks have defined values: when
neither mask has foreground, Dice, IoU and sensitivity are 1.0 (perfect agreement); when only one
has, they are 0.0. Specificity is 1.0 when there is no background pixel at all.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.classification import binary_stat_scores, multiclass_stat_scores

from medattn.errors import DataError

__all__ = [
    "SEGMENTATION_METRICS",
    "segmentation_counts",
    "segmentation_metrics",
    "dice",
    "iou",
    "multiclass_segmentation_metrics",
]

SEGMENTATION_METRICS = ("dice", "iou", "sensitivity", "specificity", "pixel_accuracy")


def _check(true: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(true), np.asarray(pred)
    if t.shape != p.shape:
        raise DataError(f"true mask shape {t.shape} differs from predicted mask shape {p.shape}; "
                        "resize the prediction to the ground truth first")
    return t, p


def segmentation_counts(true: np.ndarray, pred: np.ndarray) -> dict[str, int]:
    """Pixel ``tp``, ``fp``, ``tn``, ``fn`` of foreground (non-zero) against background."""
    t, p = _check(true, pred)
    tt = torch.from_numpy(np.ascontiguousarray(t != 0).reshape(-1)).to(torch.uint8)
    pp = torch.from_numpy(np.ascontiguousarray(p != 0).reshape(-1)).to(torch.uint8)
    if tt.numel() == 0:
        return {"tp": 0, "fp": 0, "tn": 0, "fn": 0}
    tp, fp, tn, fn, _ = binary_stat_scores(pp, tt).tolist()
    return {"tp": int(tp), "fp": int(fp), "tn": int(tn), "fn": int(fn)}


def _ratio(num: float, den: float, empty: float) -> float:
    return float(num / den) if den > 0 else empty


def _from_counts(tp: int, fp: int, tn: int, fn: int) -> dict[str, float]:
    n = tp + fp + tn + fn
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, 1.0),
        "iou": _ratio(tp, tp + fp + fn, 1.0),
        "sensitivity": _ratio(tp, tp + fn, 1.0 if fp == 0 else 0.0),
        "specificity": _ratio(tn, tn + fp, 1.0),
        "pixel_accuracy": _ratio(tp + tn, n, 1.0),
    }


def segmentation_metrics(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Dice, IoU, sensitivity (recall), specificity and pixel accuracy of foreground (non-zero).

    Args:
        true: ground-truth mask (binary or instance labels).
        pred: predicted mask of the same shape.
    """
    return _from_counts(**segmentation_counts(true, pred))


def dice(true: np.ndarray, pred: np.ndarray) -> float:
    """Dice coefficient ``2|T∩P| / (|T| + |P|)`` of the foregrounds (1.0 when both are empty)."""
    return segmentation_metrics(true, pred)["dice"]


def iou(true: np.ndarray, pred: np.ndarray) -> float:
    """Jaccard index ``|T∩P| / |T∪P|`` of the foregrounds (1.0 when both are empty)."""
    return segmentation_metrics(true, pred)["iou"]


def multiclass_segmentation_metrics(
    true: np.ndarray, pred: np.ndarray, num_classes: int, class_names: list[str] | None = None,
) -> dict[str, dict[str, float]]:
    """Per-class (one-vs-rest) segmentation metrics of semantic label maps, plus their macro mean.

    Args:
        true: integer class map (values in ``0..num_classes-1``).
        pred: integer class map of the same shape.
        num_classes: number of classes, background included.
        class_names: optional names (default ``class_<k>``).

    Returns:
        ``{class_name: {metric: value}, ..., "macro": {metric: mean}}``; the macro mean averages
        the classes present in either map, so classes absent from both do not inflate it.
    """
    t, p = _check(true, pred)
    names = class_names or [f"class_{k}" for k in range(num_classes)]
    if len(names) != num_classes:
        raise DataError(f"class_names has {len(names)} names but num_classes is {num_classes}")
    for arr, what in ((t, "true"), (p, "pred")):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise DataError(f"{what} class map has values outside 0..{num_classes - 1}; "
                            "check num_classes or the mask encoding")
    tt = torch.from_numpy(np.ascontiguousarray(t).reshape(-1).astype(np.int64))
    pp = torch.from_numpy(np.ascontiguousarray(p).reshape(-1).astype(np.int64))
    stats = multiclass_stat_scores(pp, tt, num_classes=num_classes, average=None).tolist()
    out: dict[str, dict[str, float]] = {}
    present = []
    for k, (tp, fp, tn, fn, support) in enumerate(stats):
        out[names[k]] = _from_counts(int(tp), int(fp), int(tn), int(fn))
        if support > 0 or fp > 0:
            present.append(names[k])
    out["macro"] = {m: float(np.mean([out[c][m] for c in present])) if present else 1.0
                    for m in SEGMENTATION_METRICS}
    return out
