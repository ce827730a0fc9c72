"""Calibration: expected calibration error, reliability-diagram data, temperature scaling.

Binary predictions (1-D probabilities of the positive class) are assessed as probabilities of
the positive class: a bin of items predicted at 0.8 should be 80% positive. Multiclass
predictions (2-D) use the top-label confidence against top-label correctness. Bins are
equal-width and left-closed on [0, 1] (a confidence of exactly 1.0 falls in the last bin); ECE is
the item-weighted mean ``|observed − confidence|`` over bins, computed from the same bins as the
reliability diagram so the two always agree (equal to torchmetrics' ``calibration_error`` whenever
no confidence is exactly 1.0, where torchmetrics opens an extra bin). Temperature scaling is fitted on *validation* predictions only and
then applied unchanged to test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from medattn.errors import DataError

__all__ = [
    "expected_calibration_error",
    "ReliabilityCurve",
    "reliability_curve",
    "logits_from_probs",
    "fit_temperature",
    "apply_temperature",
]

_EPS = 1e-7


def _confidence(y_true: np.ndarray, prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, outcome) pairs: positive-class probability/label, or top-label ones."""
    y = np.asarray(y_true).astype(np.int64).reshape(-1)
    p = np.asarray(prob, dtype=np.float64)
    if p.ndim == 1 or (p.ndim == 2 and p.shape[1] == 1):
        p = p.reshape(-1)
        if p.shape != y.shape:
            raise DataError(f"labels ({y.shape}) and probabilities ({p.shape}) differ in length")
        return p, y.astype(np.float64)
    if p.ndim != 2 or p.shape[0] != len(y):
        raise DataError(f"probabilities must be (items,) or (items, classes) with {len(y)} rows, got {p.shape}")
    return p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64)


def expected_calibration_error(y_true: np.ndarray, prob: np.ndarray, n_bins: int = 15) -> float:
    """ECE with ``n_bins`` equal-width bins (binary: positive-class probability; multiclass: top label).

    Returns ``nan`` for an empty input.
    """
    return reliability_curve(y_true, prob, n_bins).ece


@dataclass(frozen=True)
class ReliabilityCurve:
    """Per-bin data of a reliability diagram (empty bins have ``count == 0`` and ``nan`` means)."""

    bin_edges: np.ndarray
    mean_confidence: np.ndarray
    observed: np.ndarray
    count: np.ndarray

    @property
    def ece(self) -> float:
        """Item-weighted mean gap between observed frequency and confidence."""
        ok = self.count > 0
        if not ok.any():
            return float("nan")
        w = self.count[ok] / self.count[ok].sum()
        return float(np.sum(w * np.abs(self.observed[ok] - self.mean_confidence[ok])))


def reliability_curve(y_true: np.ndarray, prob: np.ndarray, n_bins: int = 15) -> ReliabilityCurve:
    """Bin items by confidence (equal-width, left-closed bins; 1.0 falls in the last bin).

    Args:
        y_true: labels.
        prob: positive-class probabilities ``(N,)`` or class probabilities ``(N, C)``.
        n_bins: number of bins on [0, 1].
    """
    if n_bins < 1:
        raise DataError(f"n_bins must be >= 1, got {n_bins}")
    conf, out = _confidence(y_true, prob)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, conf, minlength=n_bins) / count
        observed = np.bincount(idx, out, minlength=n_bins) / count
    return ReliabilityCurve(edges, mean_conf, observed, count.astype(np.int64))


def logits_from_probs(prob: np.ndarray) -> np.ndarray:
    """Logits that reproduce ``prob``: log-odds for 1-D input, log-probabilities for 2-D."""
    p = np.clip(np.asarray(prob, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p) if p.ndim == 1 else np.log(p)


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities of ``logits / temperature`` (sigmoid for 1-D logits, softmax for 2-D)."""
    if not temperature > 0:
        raise DataError(f"temperature must be > 0, got {temperature}")
    from medattn.models.outputs import probabilities

    z = torch.as_tensor(np.asarray(logits, dtype=np.float64)) / float(temperature)
    return probabilities(z, "binary" if z.ndim == 1 else "multiclass").double().numpy()


def _nll(logits: torch.Tensor, y: torch.Tensor, temperature: float) -> float:
    z = logits / temperature
    if z.ndim == 1:
        return float(torch.nn.functional.binary_cross_entropy_with_logits(z, y.double()))
    return float(torch.nn.functional.cross_entropy(z, y))


def fit_temperature(logits: np.ndarray, y_true: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """Temperature minimising the negative log-likelihood of *validation* logits.

    Args:
        logits: ``(N,)`` binary logits or ``(N, C)`` class logits (see :func:`logits_from_probs`).
        y_true: validation labels.
        bounds: search interval of the temperature.

    Returns:
        The fitted temperature (> 1 softens over-confident predictions).
    """
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    y = torch.as_tensor(np.asarray(y_true).astype(np.int64).reshape(-1))
    if z.shape[0] != y.shape[0] or z.ndim not in (1, 2):
        raise DataError(f"logits {tuple(z.shape)} must be (items,) or (items, classes) with {y.shape[0]} rows")
    if len(y) == 0:
        raise DataError("cannot fit a temperature on an empty validation set")
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    res = minimize_scalar(lambda t: _nll(z, y, float(np.exp(t))), bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-5})
    return float(np.exp(res.x))
