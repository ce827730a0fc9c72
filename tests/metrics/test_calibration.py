"""ECE and reliability bins against independent computations; temperature scaling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.calibration import calibration_curve
from torchmetrics.functional.classification import (
    binary_calibration_error,
    multiclass_calibration_error,
)

from medattn.errors import DataError
from medattn.metrics.calibration import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    logits_from_probs,
    reliability_curve,
)


def test_binary_ece_and_curve_match_torchmetrics_and_sklearn() -> None:
    rng = np.random.default_rng(0)
    p = rng.random(400) * 0.999
    y = (rng.random(400) < p**1.5).astype(int)
    ece = expected_calibration_error(y, p, n_bins=10)
    want = float(binary_calibration_error(torch.as_tensor(p), torch.as_tensor(y), n_bins=10))
    assert ece == pytest.approx(want, abs=1e-9)
    curve = reliability_curve(y, p, n_bins=10)
    frac, mean_pred = calibration_curve(y, p, n_bins=10)
    ok = curve.count > 0
    np.testing.assert_allclose(curve.observed[ok], frac, atol=1e-12)
    np.testing.assert_allclose(curve.mean_confidence[ok], mean_pred, atol=1e-12)
    assert curve.count.sum() == 400


def test_multiclass_ece_matches_torchmetrics() -> None:
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(3) * 0.5, 300)
    y = rng.integers(0, 3, 300)
    want = float(multiclass_calibration_error(torch.as_tensor(p), torch.as_tensor(y), num_classes=3, n_bins=15))
    assert expected_calibration_error(y, p) == pytest.approx(want, abs=1e-6)


def test_edge_cases() -> None:
    assert expected_calibration_error(np.array([1, 0]), np.array([1.0, 0.0])) == 0.0
    assert np.isnan(expected_calibration_error(np.zeros(0, int), np.zeros(0)))
    with pytest.raises(DataError, match="n_bins"):
        reliability_curve(np.array([1]), np.array([0.5]), n_bins=0)
    with pytest.raises(DataError, match="length"):
        expected_calibration_error(np.array([1, 0]), np.array([0.5]))


def test_temperature_recovers_overconfidence_and_lowers_ece() -> None:
    rng = np.random.default_rng(2)
    z = rng.normal(0, 2, 4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-z))).astype(int)
    over = 3.0 * z  # an over-confident model
    t = fit_temperature(over[:2000], y[:2000])  # fitted on "validation"
    assert t == pytest.approx(3.0, rel=0.15)
    before = expected_calibration_error(y[2000:], apply_temperature(over[2000:], 1.0))
    after = expected_calibration_error(y[2000:], apply_temperature(over[2000:], t))
    assert after < before / 2
    # multiclass, from probabilities
    logits = rng.normal(0, 1.5, (3000, 4))
    pr = torch.softmax(torch.as_tensor(logits), 1).numpy()
    yc = np.array([rng.choice(4, p=row) for row in pr])
    tc = fit_temperature(logits_from_probs(torch.softmax(torch.as_tensor(logits * 2.5), 1).numpy()), yc)
    assert tc == pytest.approx(2.5, rel=0.15)
    with pytest.raises(DataError, match="temperature"):
        apply_temperature(z, 0.0)
