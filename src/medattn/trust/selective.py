"""Selective prediction: the risk–coverage curve and its area (AURC).

Items are ranked by confidence (the probability of the predicted class; binary: of the class
chosen by the threshold); at coverage ``c`` the model answers the ``c`` most confident share and
refers the rest, and the risk is its error rate on the answered items. AURC is the mean risk over
all coverages (lower is better): a ranking that puts every error last gets the smallest value
possible at that error rate, a random ranking about the overall error rate. Multilabel: every (image, finding) decision is one item.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["risk_coverage", "confidence_and_error"]

_GRID = 50


def confidence_and_error(kind: str, y: np.ndarray, prob: np.ndarray, threshold: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Per decision: confidence in the prediction and whether it is wrong."""
    y, p = np.asarray(y), np.asarray(prob, np.float64)
    if kind == "multiclass":
        pred = p.argmax(1)
        return p.max(1), (pred != y.astype(int)).astype(float)
    if kind == "multilabel":
        th = np.asarray([threshold[k] for k in threshold] if isinstance(threshold, dict) else
                        (threshold if threshold is not None else [0.5] * p.shape[1]), np.float64)
        pred = p >= th[None, :]
        conf = np.where(pred, p, 1 - p)
        return conf.ravel(), (pred != (y > 0)).astype(float).ravel()
    t = 0.5 if threshold is None else float(threshold)
    p = p.reshape(-1)
    pred = p >= t
    return np.where(pred, p, 1 - p), (pred != (y.reshape(-1) > 0)).astype(float)


def risk_coverage(kind: str, y: np.ndarray, prob: np.ndarray, threshold: Any = None) -> dict[str, Any]:
    """``{"aurc", "risk_at_full", "coverage": [...], "risk": [...]}`` (curve on a 50-point grid)."""
    conf, err = confidence_and_error(kind, y, prob, threshold)
    n = len(conf)
    if n == 0:
        return {}
    order = np.argsort(-conf, kind="stable")
    cum_risk = np.cumsum(err[order]) / np.arange(1, n + 1)
    grid = np.linspace(1 / n, 1, min(_GRID, n))
    idx = np.clip(np.ceil(grid * n).astype(int) - 1, 0, n - 1)
    return {"aurc": float(cum_risk.mean()), "risk_at_full": float(cum_risk[-1]), "n": int(n),
            "coverage": [round(float(c), 4) for c in grid], "risk": [round(float(r), 5) for r in cum_risk[idx]]}
