"""Which metrics a one-line console summary shows: AUROC is never cut off."""

from __future__ import annotations

from medattn.metrics.classification import BINARY_METRICS
from medattn.metrics.summary import headline_keys


def test_binary_headline_shows_auroc() -> None:
    keys = headline_keys(list(BINARY_METRICS) + ["ece"])
    assert keys == ["balanced_accuracy", "auroc", "f1", "recall", "specificity", "accuracy"]


def test_other_tasks_lead_with_their_own_metrics() -> None:
    assert headline_keys(["accuracy", "balanced_accuracy", "macro_f1", "macro_auroc", "ece"], 3) == [
        "balanced_accuracy", "macro_auroc", "macro_f1"]
    assert headline_keys(["mean_auroc", "mean_auprc", "auroc_Mass"], 2) == ["mean_auroc", "mean_auprc"]
    assert headline_keys(["dice", "iou", "aji", "pq"]) == ["dice", "aji", "pq", "iou"]
