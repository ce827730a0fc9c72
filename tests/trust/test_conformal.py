"""Split-conformal sets: empirical coverage on exchangeable synthetic data, stored form, edge cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from medattn.errors import ConfigError
from medattn.trust.conformal import (
    MAX_STORED,
    aps_scores,
    conformal_quantile,
    coverage_stats,
    fit_conformal,
    prediction_sets,
    set_membership,
)


def _multiclass(n: int, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A mediocre classifier: softmax of noisy logits that favour the true class (exchangeable draws)."""
    y = rng.integers(0, k, n)
    z = rng.normal(0, 1.0, (n, k))
    z[np.arange(n), y] += 1.2
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    return y, p


def _binary(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = (rng.random(n) < 0.3).astype(int)  # imbalanced, like tumour patches
    z = rng.normal(0, 1.3, n) + np.where(y == 1, 1.0, -1.0)
    return y, 1 / (1 + np.exp(-z))


@pytest.mark.parametrize("alpha", [0.1, 0.2])
def test_binary_mondrian_coverage_overall_and_per_class(alpha: float) -> None:
    rng = np.random.default_rng(0)
    hits = {0: [], 1: [], "all": []}
    for _ in range(5):  # five calibration/test draws: each within 3 points, not just the mean
        yc, pc = _binary(4000, rng)
        yt, pt = _binary(8000, rng)
        cal = fit_conformal("binary", yc, pc, ["normal", "tumour"])
        cov = coverage_stats(cal, yt, pt, alpha)["covered"]
        hits["all"].append(cov.mean())
        for c in (0, 1):
            hits[c].append(cov[yt == c].mean())
    for key, vals in hits.items():
        assert all(abs(v - (1 - alpha)) <= 0.03 for v in vals), (key, vals)


@pytest.mark.parametrize("method", ["aps", "raps"])
@pytest.mark.parametrize("alpha", [0.1, 0.2])
def test_multiclass_aps_raps_coverage(alpha: float, method: str) -> None:
    rng = np.random.default_rng(1)
    yc, pc = _multiclass(2000, 5, rng)
    yt, pt = _multiclass(5000, 5, rng)
    cal = fit_conformal("multiclass", yc, pc, list("abcde"))
    st = coverage_stats(cal, yt, pt, alpha, method)
    assert abs(st["covered"].mean() - (1 - alpha)) <= 0.03
    assert 1 <= st["size"].min() and st["size"].mean() < 5  # informative, never empty
    # a harder target needs larger sets
    assert coverage_stats(cal, yt, pt, alpha / 2, method)["size"].mean() > st["size"].mean()


@pytest.mark.parametrize("alpha", [0.1, 0.2])
def test_multilabel_per_label_coverage(alpha: float) -> None:
    rng = np.random.default_rng(2)
    n, k = 3000, 3
    y = (rng.random((2 * n, k)) < [0.1, 0.3, 0.5]).astype(int)
    p = 1 / (1 + np.exp(-(rng.normal(0, 1.2, (2 * n, k)) + np.where(y == 1, 1.2, -1.2))))
    cal = fit_conformal("multilabel", y[:n], p[:n], ["a", "b", "c"])
    keep = set_membership(cal, p[n:], alpha)
    assert keep.shape == (n, k, 2)
    for j in range(k):
        cov = keep[np.arange(n), j, y[n:, j]].mean()
        assert abs(cov - (1 - alpha)) <= 0.03
    sets = prediction_sets(cal, p[n:n + 2], alpha)
    assert set(sets[0]) == {"a", "b", "c"} and all(v and set(v) <= {"absent", "present"} for v in sets[0].values())


def test_grid_storage_is_compact_json_and_conservative() -> None:
    rng = np.random.default_rng(3)
    y, p = _multiclass(20_000, 4, rng)
    cal = fit_conformal("multiclass", y, p, list("abcd"))
    assert cal["strata"]["aps"]["grid"] and len(cal["strata"]["aps"]["scores"]) == MAX_STORED
    assert len(json.dumps(cal)) < 60_000  # numbers only, small
    exact = np.sort(aps_scores(p)[np.arange(len(y)), y])
    for a in (0.05, 0.1, 0.2, 0.33):
        want = exact[math.ceil((len(y) + 1) * (1 - a)) - 1]
        got = conformal_quantile(cal["strata"]["aps"], a)
        assert got >= want - 1e-6  # never below the exact finite-sample quantile
        assert got <= exact[min(len(y) - 1, math.ceil((len(y) + 1) * (1 - a)) + len(y) // 1000)] + 1e-6


def test_binary_sets_name_classes_and_refer_when_both() -> None:
    cal = fit_conformal("binary", np.array([0] * 50 + [1] * 50), np.r_[np.linspace(0, 0.6, 50), np.linspace(0.4, 1, 50)],
                        ["non-IDC", "IDC"])
    sets = prediction_sets(cal, np.array([0.01, 0.99, 0.5]), 0.1)
    assert sets[0] == ["non-IDC"] and sets[1] == ["IDC"] and sets[2] == ["non-IDC", "IDC"]


def test_too_few_items_admit_every_class_and_bad_alpha_raises() -> None:
    cal = fit_conformal("binary", np.array([0, 1, 1]), np.array([0.2, 0.7, 0.9]), ["a", "b"])
    assert conformal_quantile(cal["strata"]["0"], 0.1) == math.inf
    assert prediction_sets(cal, np.array([0.5]), 0.1) == [["a", "b"]]
    with pytest.raises(ConfigError):
        conformal_quantile(cal["strata"]["1"], 1.5)
    with pytest.raises(ConfigError):
        fit_conformal("segmentation", np.array([0]), np.array([0.1]), ["a"])


def test_evaluation_trust_external_reuses_the_bundle_calibration() -> None:
    from types import SimpleNamespace

    from medattn.engine.trust_fit import evaluation_trust

    rng = np.random.default_rng(4)
    recipe = SimpleNamespace(evaluation=SimpleNamespace(n_boot=50, ci_alpha=0.05), trainer=SimpleNamespace(seed=0))
    yv, pv = _binary(3000, rng)
    yt, pt = _binary(3000, rng)
    own = evaluation_trust(recipe, kind="binary", names=["a", "b"], valid=(yv, pv), test=(yt, pt), groups=None,
                           fixed=None, threshold=0.5)
    c = own["metrics"]["conformal"]["alpha_0.1"]
    assert c["coverage"]["ci_low"] <= c["coverage"]["value"] <= c["coverage"]["ci_high"]
    assert abs(c["coverage"]["value"] - 0.9) <= 0.03 and own["conformal"]["n"] == 3000
    ext = evaluation_trust(recipe, kind="binary", names=["a", "b"], valid=(None, None), test=(yt, pt), groups=None,
                           fixed={"conformal": own["conformal"]}, threshold=0.5)
    assert ext["metrics"]["conformal"]["alpha_0.2"]["coverage"] == own["metrics"]["conformal"]["alpha_0.2"]["coverage"]
    assert ext["metrics"]["conformal"]["calibrated_on"] == "the bundle's validation split"
    same = evaluation_trust(recipe, kind="binary", names=["a", "b"], valid=(yv, pv), test=(yv, pv), groups=None,
                            fixed=None, split="valid")
    assert "conformal" not in same["metrics"] and "aurc" in same["metrics"]["selective"]
