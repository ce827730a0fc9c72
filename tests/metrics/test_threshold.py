"""Operating points chosen on validation against a brute-force search."""

from __future__ import annotations

import numpy as np
import pytest

from medattn.errors import ConfigError
from medattn.metrics import binary_metrics
from medattn.metrics.threshold import choose_threshold, choose_thresholds


def _sens_spec(y: np.ndarray, p: np.ndarray, t: float) -> tuple[float, float]:
    k = p >= t
    return float(k[y == 1].mean()), float((~k)[y == 0].mean())


@pytest.mark.parametrize("seed", range(3))
def test_youden_is_the_brute_force_optimum(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 150)
    p = np.round(np.clip(0.5 + (y - 0.5) * 0.4 + rng.normal(0, 0.25, 150), 0, 1), 2)  # with ties
    t = choose_threshold(y, p)
    best = max(sum(_sens_spec(y, p, c)) - 1 for c in np.unique(p))
    assert sum(_sens_spec(y, p, t)) - 1 == pytest.approx(best)
    m = binary_metrics(y, p, t)  # the same >= semantics as the chosen threshold
    assert m["recall"] + m["specificity"] - 1 == pytest.approx(best)


def test_target_sensitivity_and_specificity() -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 300)
    p = np.clip(0.5 + (y - 0.5) * 0.3 + rng.normal(0, 0.25, 300), 0, 1)
    t = choose_threshold(y, p, "sensitivity", 0.9)
    sens, _ = _sens_spec(y, p, t)
    assert sens >= 0.9
    above = p[p > t]
    if len(above):  # the next higher score would miss the target: t is the highest that reaches it
        assert _sens_spec(y, p, above.min())[0] < 0.9
    t2 = choose_threshold(y, p, "specificity", 0.9)
    assert _sens_spec(y, p, t2)[1] >= 0.9
    assert choose_threshold(np.ones(5, int), rng.random(5)) == 0.5
    with pytest.raises(ConfigError, match="unknown threshold method"):
        choose_threshold(y, p, "nope")


def test_per_finding_thresholds() -> None:
    rng = np.random.default_rng(5)
    y = (rng.random((100, 3)) < 0.4).astype(int)
    y[:, 2] = 0
    p = np.clip(y * 0.4 + rng.random((100, 3)) * 0.6, 0, 1)
    thr = choose_thresholds(y, p)
    assert thr[0] == choose_threshold(y[:, 0], p[:, 0]) and thr[2] == 0.5
