"""Ordinal (grade) metrics against scikit-learn, and the decision rules."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, f1_score

from medattn.errors import DataError
from medattn.metrics.ordinal import ordinal_confusion, ordinal_metrics, ordinal_predictions


def test_matches_sklearn_on_random_grades() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        y = rng.integers(0, 4, 60)
        pred = np.clip(y + rng.integers(-2, 3, 60), 0, 3)
        m = ordinal_metrics(y, pred, 4)
        assert m["qwk"] == pytest.approx(cohen_kappa_score(y, pred, weights="quadratic"), abs=1e-6)
        assert m["linear_kappa"] == pytest.approx(cohen_kappa_score(y, pred, weights="linear"), abs=1e-6)
        assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"), abs=1e-6)
        assert m["accuracy"] == pytest.approx((y == pred).mean())
        assert m["mae_grade"] == pytest.approx(np.abs(y - pred).mean())


def test_far_misses_cost_more_than_near_misses() -> None:
    y = np.array([0, 1, 2, 3] * 5)
    near = np.where(y < 3, y + 1, 2)  # every item one grade off
    far = (y + 2) % 4  # every item two grades off
    assert ordinal_metrics(y, near, 4)["accuracy"] == ordinal_metrics(y, far, 4)["accuracy"] == 0.0
    assert ordinal_metrics(y, near, 4)["qwk"] > ordinal_metrics(y, far, 4)["qwk"]
    assert ordinal_metrics(y, y, 4)["qwk"] == pytest.approx(1.0)


def test_probabilities_confusion_and_rules() -> None:
    prob = np.array([[0.5, 0.1, 0.1, 0.3], [0.05, 0.2, 0.5, 0.25]])
    assert ordinal_predictions(prob).tolist() == [0, 2]
    assert ordinal_predictions(prob, "median").tolist() == [0, 2]
    assert ordinal_predictions(np.array([[0.4, 0.0, 0.0, 0.6]]), "median").tolist() == [3]
    cm = ordinal_confusion([0, 2], prob)
    assert cm.shape == (4, 4) and cm[0, 0] == 1 and cm[2, 2] == 1
    m = ordinal_metrics(np.array([0, 2]), prob)
    assert m["accuracy"] == 1.0
    assert np.isnan(ordinal_metrics([1, 1], [1, 1], 3)["qwk"])  # undefined, not a fake 1.0


def test_bad_input_names_the_problem() -> None:
    with pytest.raises(DataError, match="grades must lie"):
        ordinal_metrics([0, 5], [0, 1], 4)
    with pytest.raises(DataError, match="predictions for"):
        ordinal_metrics([0, 1, 2], [0, 1], 4)
    with pytest.raises(DataError, match="decision rule"):
        ordinal_predictions(np.ones((2, 3)), "mode")
