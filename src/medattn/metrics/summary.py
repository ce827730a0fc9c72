"""Headline metrics: a binary test set with 95% bootstrap CIs, and which metrics a one-line
console summary shows first."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from medattn.metrics.bootstrap import bootstrap_ci
from medattn.metrics.classification import binary_metrics

__all__ = ["binary_summary", "headline_keys", "metric_range", "HEADLINE_ORDER"]

HEADLINE_ORDER = (
    "balanced_accuracy", "auroc", "macro_auroc", "mean_auroc", "f1", "macro_f1", "recall", "specificity",
    "accuracy", "qwk", "dice", "aji", "pq",
)
"""Metrics a console line shows first, when the task has them (the rest follow in their order)."""


def headline_keys(keys: Iterable[str], n: int = 6) -> list[str]:
    """The ``n`` metric names a one-line summary shows: the discrimination and threshold metrics
    of :data:`HEADLINE_ORDER` first (so AUROC is never cut off), then the others."""
    keys = list(keys)
    first = [k for k in HEADLINE_ORDER if k in keys]
    return (first + [k for k in keys if k not in first])[:n]


def binary_summary(
    y_true: np.ndarray, prob: np.ndarray, threshold: float = 0.5,
    groups: Sequence[object] | np.ndarray | None = None, n_boot: int = 1000, seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Every binary metric with a percentile CI (patients resampled when ``groups`` is given)."""
    y = np.asarray(y_true).astype(int)
    p = np.asarray(prob, dtype=np.float64)
    res = bootstrap_ci(lambda i: binary_metrics(y[i], p[i], threshold), len(y), groups, n_boot, seed=seed)
    for v in res.values():
        v["resampled"] = "groups" if groups is not None else "items"
    return res


_SIGNED = ("kappa", "qwk", "mcc", "diff")
_UNBOUNDED = ("mae", "set_size", "count", "loss", "hausdorff", "hd95", "objects", "seconds")


def metric_range(name: str) -> tuple[float, float]:
    """The values a metric can take: ``[-1, 1]`` for agreement coefficients (kappa, MCC),
    ``[0, inf)`` for errors, sizes and counts, ``[0, 1]`` for every rate, score and AUC."""
    n = name.lower()
    if any(k in n for k in _SIGNED):
        return -1.0, 1.0
    if any(k in n for k in _UNBOUNDED):
        return 0.0, float("inf")
    return 0.0, 1.0
