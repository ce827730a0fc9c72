"""Metrics: classification (from probabilities), bootstrap CIs, thresholds, calibration,
paired comparisons, pixel and instance segmentation metrics, instance post-processing."""

from __future__ import annotations

from medattn.metrics.bootstrap import bootstrap_ci, group_resample_indices
from medattn.metrics.calibration import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    reliability_curve,
)
from medattn.metrics.classification import BINARY_METRICS, binary_confusion, binary_metrics
from medattn.metrics.compare import compare_prediction_tables, paired_bootstrap
from medattn.metrics.instance import (
    aggregated_jaccard_index,
    aggregated_jaccard_index_plus,
    instance_metrics,
    panoptic_quality,
)
from medattn.metrics.multiclass import (
    multiclass_confusion,
    multiclass_metrics,
    multiclass_per_class,
)
from medattn.metrics.multilabel import multilabel_metrics, multilabel_per_label
from medattn.metrics.segmentation import dice, iou, segmentation_metrics
from medattn.metrics.threshold import choose_threshold

__all__ = [
    "BINARY_METRICS", "aggregated_jaccard_index", "aggregated_jaccard_index_plus", "apply_temperature",
    "binary_confusion", "binary_metrics", "bootstrap_ci", "choose_threshold", "compare_prediction_tables",
    "dice", "expected_calibration_error", "fit_temperature", "group_resample_indices", "instance_metrics",
    "iou", "multiclass_confusion", "multiclass_metrics", "multiclass_per_class", "multilabel_metrics",
    "multilabel_per_label", "paired_bootstrap", "panoptic_quality", "reliability_curve",
    "segmentation_metrics",
]
