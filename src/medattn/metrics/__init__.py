"""Metrics: classification (from probabilities), bootstrap CIs, thresholds."""

from __future__ import annotations

from medattn.metrics.bootstrap import bootstrap_ci, group_resample_indices
from medattn.metrics.classification import BINARY_METRICS, binary_confusion, binary_metrics
from medattn.metrics.threshold import choose_threshold

__all__ = [
    "BINARY_METRICS", "binary_confusion", "binary_metrics", "bootstrap_ci",
    "choose_threshold", "group_resample_indices",
]
