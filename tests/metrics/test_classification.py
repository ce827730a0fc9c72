"""Classification metrics equal scikit-learn's, including edge cases; bootstrap CI coverage."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.stats import norm
from sklearn import metrics as skm

from medattn.errors import DataError
from medattn.metrics import binary_confusion, binary_metrics, bootstrap_ci
from medattn.metrics.multiclass import (
    multiclass_confusion,
    multiclass_metrics,
    multiclass_per_class,
)
from medattn.metrics.multilabel import multilabel_metrics, multilabel_per_label

_RNG = np.random.default_rng(11)
BINARY_CASES = {
    "random": (_RNG.integers(0, 2, 80), _RNG.random(80)),
    "ties": (_RNG.integers(0, 2, 80), _RNG.integers(0, 5, 80) / 4),
    "all_equal": (_RNG.integers(0, 2, 80), np.full(80, 0.5)),
    "only_positive": (np.ones(30, int), _RNG.random(30)),
    "only_negative": (np.zeros(30, int), _RNG.random(30)),
    "perfect": (np.r_[np.zeros(10, int), np.ones(10, int)], np.r_[np.zeros(10), np.ones(10)]),
}


def _sk_binary(y: np.ndarray, p: np.ndarray, thr: float) -> dict[str, float]:
    k = (p >= thr).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {
            "accuracy": skm.accuracy_score(y, k),
            "balanced_accuracy": skm.balanced_accuracy_score(y, k),
            "precision": skm.precision_score(y, k, zero_division=0),
            "recall": skm.recall_score(y, k, zero_division=0),
            "specificity": skm.recall_score(1 - y, 1 - k, zero_division=0),
            "f1": skm.f1_score(y, k, zero_division=0),
        }
        both = 0 < y.sum() < len(y)
        out["auroc"] = skm.roc_auc_score(y, p) if both else np.nan  # sklearn raises: undefined
        out["auprc"] = skm.average_precision_score(y, p) if y.sum() > 0 else np.nan  # recall undefined
    return out


@pytest.mark.parametrize("case", list(BINARY_CASES))
@pytest.mark.parametrize("thr", [0.5, 0.25])
def test_binary_equals_sklearn(case: str, thr: float) -> None:
    y, p = BINARY_CASES[case]
    got = binary_metrics(y, p, thr)
    for key, want in _sk_binary(y, p, thr).items():
        assert got[key] == pytest.approx(want, abs=1e-6, nan_ok=True), key
    cm = binary_confusion(y, p, thr)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y, (p >= thr).astype(int), labels=[0, 1]))


@pytest.mark.parametrize("case", ["random", "class_absent", "ties", "all_equal"])
def test_multiclass_equals_sklearn(case: str) -> None:
    rng = np.random.default_rng(5)
    c = 4
    y = rng.integers(0, c, 90)
    p = rng.dirichlet(np.ones(c), 90)
    if case == "class_absent":
        y[y == 2] = 0
    if case == "ties":
        p = np.round(p * 3) / 3 + 1e-3
        p /= p.sum(1, keepdims=True)
    if case == "all_equal":
        p = np.full((90, c), 1 / c)
    k = np.argmax(p, 1)
    got = multiclass_metrics(y, p)
    labels = np.union1d(y, k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, k))
        assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, k))
        for name, fn in (("precision", skm.precision_score), ("recall", skm.recall_score),
                         ("f1", skm.f1_score)):
            want = fn(y, k, labels=labels, average="macro", zero_division=0)
            assert got[f"macro_{name}"] == pytest.approx(want), name
    per = multiclass_per_class(y, p, ["a", "b", "c", "d"])
    aucs, aps = [], []
    for i, name in enumerate("abcd"):
        if (y == i).any():
            aucs.append(skm.roc_auc_score(y == i, p[:, i]))
            aps.append(skm.average_precision_score(y == i, p[:, i]))
            assert per[name]["auroc"] == pytest.approx(aucs[-1])
            assert per[name]["auprc"] == pytest.approx(aps[-1])
        else:
            assert np.isnan(per[name]["auroc"]) and per[name]["support"] == 0
    assert got["macro_auroc"] == pytest.approx(np.mean(aucs))
    assert got["macro_auprc"] == pytest.approx(np.mean(aps))
    if case == "random":
        assert got["macro_auroc"] == pytest.approx(skm.roc_auc_score(y, p, multi_class="ovr"))
    np.testing.assert_array_equal(multiclass_confusion(y, k, c), skm.confusion_matrix(y, k, labels=range(c)))


def test_multiclass_bad_input() -> None:
    with pytest.raises(DataError, match="rows"):
        multiclass_metrics(np.zeros(3, int), np.ones((4, 2)) / 2)
    with pytest.raises(DataError, match="labels must lie"):
        multiclass_metrics(np.array([0, 5]), np.ones((2, 2)) / 2)


def test_multilabel_equals_sklearn() -> None:
    rng = np.random.default_rng(2)
    y = (rng.random((70, 5)) < 0.3).astype(int)
    y[:, 4] = 0  # a finding without positives
    p = np.clip(y * 0.3 + rng.random((70, 5)) * 0.7, 0, 1)
    thr = [0.5, 0.4, 0.6, 0.5, 0.5]
    per = multilabel_per_label(y, p, list("abcde"), thr)
    for j, name in enumerate("abcd"):
        assert per[name]["auroc"] == pytest.approx(skm.roc_auc_score(y[:, j], p[:, j]))
        assert per[name]["f1"] == pytest.approx(skm.f1_score(y[:, j], p[:, j] >= thr[j]))
    assert np.isnan(per["e"]["auroc"])
    flat = multilabel_metrics(y, p, list("abcde"), thr)
    want = skm.roc_auc_score(y[:, :4], p[:, :4], average="macro")
    assert flat["mean_auroc"] == pytest.approx(want)
    assert flat["auroc_a"] == pytest.approx(per["a"]["auroc"])
    with pytest.raises(DataError, match="thresholds"):
        multilabel_metrics(y, p, thresholds=[0.5, 0.5])


def test_bootstrap_ci_coverage_is_nominal() -> None:
    """200 simulated test sets with a known sensitivity, 200 resamples each: ~95% coverage."""
    rng = np.random.default_rng(0)
    d = 1.0
    truth = norm.cdf(d)  # P(score > 0 | positive) for scores N(d, 1)
    hits = 0
    n_sim = 200
    for sim in range(n_sim):
        y = rng.integers(0, 2, 150)
        hit = (rng.normal(0, 1, 150) + d * y) > 0

        def sens(i: np.ndarray, y=y, hit=hit) -> dict[str, float]:
            pos = y[i] == 1
            return {"sensitivity": float(hit[i][pos].mean())}

        ci = bootstrap_ci(sens, 150, n_boot=200, seed=sim)["sensitivity"]
        hits += ci["ci_low"] <= truth <= ci["ci_high"]
    assert 0.88 <= hits / n_sim <= 0.99


def test_group_bootstrap_covers_clustered_data() -> None:
    """Items of a patient are correlated: resampling patients keeps coverage, items do not."""
    rng = np.random.default_rng(1)
    hits = {"groups": 0, "items": 0}
    n_sim, n_groups, per = 150, 30, 10
    groups = np.repeat(np.arange(n_groups), per)
    for sim in range(n_sim):
        x = np.repeat(rng.normal(0, 1, n_groups), per) + rng.normal(0, 0.3, n_groups * per)
        for how, g in (("groups", groups), ("items", None)):
            ci = bootstrap_ci(lambda i, x=x: {"mean": float(x[i].mean())}, len(x), g, n_boot=200,
                              seed=sim)["mean"]
            hits[how] += ci["ci_low"] <= 0.0 <= ci["ci_high"]
    assert 0.86 <= hits["groups"] / n_sim <= 0.99
    assert hits["items"] / n_sim < 0.6
