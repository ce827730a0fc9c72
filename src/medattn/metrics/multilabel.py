"""Multilabel metrics (e.g. the 14 ChestX-ray14 findings), one binary problem per finding.

Per finding: AUROC and AUPRC from the probabilities, and threshold metrics at a per-finding
decision threshold (chosen on validation). A finding without positives (or without negatives)
in the evaluated items has undefined AUROC/AUPRC (``nan``) and is left out of the means.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medattn.errors import DataError
from medattn.metrics.classification import binary_metrics

__all__ = ["multilabel_per_label", "multilabel_metrics"]


def _inputs(
    y_true: np.ndarray, prob: np.ndarray, thresholds: float | Sequence[float] | np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    p = np.asarray(prob, dtype=np.float64)
    if y.ndim != 2 or y.shape != p.shape:
        raise DataError(f"multilabel labels {y.shape} and probabilities {p.shape} must be equal-shape "
                        "(items, findings) arrays")
    thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (p.shape[1],)) \
        if np.ndim(thresholds) == 0 or len(np.asarray(thresholds)) == p.shape[1] else None
    if thr is None:
        raise DataError(f"thresholds must be one number or one per finding ({p.shape[1]}), "
                        f"got {len(np.asarray(thresholds))}")
    return y.astype(np.int64), p, thr


def multilabel_per_label(
    y_true: np.ndarray, prob: np.ndarray, label_names: list[str] | None = None,
    thresholds: float | Sequence[float] | np.ndarray = 0.5,
) -> dict[str, dict[str, float]]:
    """Binary metrics of every finding (see :func:`medattn.metrics.classification.binary_metrics`).

    Args:
        y_true: ``(N, L)`` 0/1 labels.
        prob: ``(N, L)`` probabilities.
        label_names: finding names in column order (default ``label_<k>``).
        thresholds: one decision threshold, or one per finding.

    Returns:
        ``{finding: {accuracy, ..., auroc, auprc, prevalence, support, threshold}}``.
    """
    y, p, thr = _inputs(y_true, prob, thresholds)
    names = label_names or [f"label_{k}" for k in range(p.shape[1])]
    if len(names) != p.shape[1]:
        raise DataError(f"{len(names)} finding names given for {p.shape[1]} probability columns")
    out = {}
    for k, name in enumerate(names):
        m = binary_metrics(y[:, k], p[:, k], float(thr[k]))
        m.update(prevalence=float(y[:, k].mean()) if len(y) else float("nan"),
                 support=int(y[:, k].sum()), threshold=float(thr[k]))
        out[name] = m
    return out


def multilabel_metrics(
    y_true: np.ndarray, prob: np.ndarray, label_names: list[str] | None = None,
    thresholds: float | Sequence[float] | np.ndarray = 0.5,
) -> dict[str, float]:
    """Flat headline metrics: ``mean_auroc``, ``mean_auprc``, macro threshold metrics and one
    ``auroc_<finding>`` per finding (a flat dict, so it can be bootstrapped)."""
    per = multilabel_per_label(y_true, prob, label_names, thresholds)

    def mean(key: str) -> float:
        vals = np.asarray([v[key] for v in per.values()], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        return float(vals.mean()) if len(vals) else float("nan")

    out = {
        "mean_auroc": mean("auroc"), "mean_auprc": mean("auprc"),
        "macro_sensitivity": mean("recall"), "macro_specificity": mean("specificity"),
        "macro_f1": mean("f1"), "macro_balanced_accuracy": mean("balanced_accuracy"),
    }
    out.update({f"auroc_{name}": v["auroc"] for name, v in per.items()})
    return out
