"""Pixel segmentation metrics against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, jaccard_score, recall_score

from medattn.errors import DataError
from medattn.metrics.segmentation import (
    multiclass_segmentation_metrics,
    segmentation_metrics,
)


@pytest.mark.parametrize("seed", range(4))
def test_binary_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 4, (32, 40)) * (rng.random((32, 40)) < 0.4)  # instance-like labels
    p = (rng.random((32, 40)) < 0.35).astype(np.uint8)
    tb, pb = (t > 0).ravel(), (p > 0).ravel()
    m = segmentation_metrics(t, p)
    assert m["dice"] == pytest.approx(f1_score(tb, pb))
    assert m["iou"] == pytest.approx(jaccard_score(tb, pb))
    assert m["sensitivity"] == pytest.approx(recall_score(tb, pb))
    assert m["specificity"] == pytest.approx(recall_score(~tb, ~pb))
    assert m["pixel_accuracy"] == pytest.approx(accuracy_score(tb, pb))


def test_empty_masks_defined() -> None:
    z = np.zeros((8, 8), np.uint8)
    o = z.copy()
    o[1:3, 1:3] = 1
    assert segmentation_metrics(z, z) == {"dice": 1.0, "iou": 1.0, "sensitivity": 1.0,
                                          "specificity": 1.0, "pixel_accuracy": 1.0}
    m = segmentation_metrics(z, o)
    assert m["dice"] == 0.0 and m["iou"] == 0.0 and m["sensitivity"] == 0.0
    assert segmentation_metrics(o, z)["dice"] == 0.0


def test_multiclass_matches_sklearn() -> None:
    rng = np.random.default_rng(3)
    t = rng.integers(0, 3, (20, 20))
    p = np.where(rng.random((20, 20)) < 0.7, t, rng.integers(0, 3, (20, 20)))
    res = multiclass_segmentation_metrics(t, p, 4, ["bg", "a", "b", "never"])
    f1 = f1_score(t.ravel(), p.ravel(), labels=[0, 1, 2], average=None)
    for k, name in enumerate(["bg", "a", "b"]):
        assert res[name]["dice"] == pytest.approx(f1[k])
    assert res["macro"]["dice"] == pytest.approx(f1.mean())
    with pytest.raises(DataError, match="outside"):
        multiclass_segmentation_metrics(t, p, 2)
