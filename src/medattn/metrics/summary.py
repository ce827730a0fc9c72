"""Headline metrics of a binary test set with 95% bootstrap CIs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medattn.metrics.bootstrap import bootstrap_ci
from medattn.metrics.classification import binary_metrics

__all__ = ["binary_summary"]


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
