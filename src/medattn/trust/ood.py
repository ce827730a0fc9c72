"""Feature-space out-of-distribution score: a class-conditional Gaussian on penultimate features.

The features are the input of the model's last linear layer (the "penultimate" layer of every
classifier in :mod:`medattn.models`). Fitted on the training split: one mean per class and a
shared (tied) covariance, as in Lee et al. 2018 ("Mahalanobis"). To keep the bundle small the
covariance is a probabilistic-PCA one: its top ``rank`` eigenvectors and eigenvalues plus one
isotropic variance for the remaining directions, so a score is

``min_k  sum_i (v_i . (f - mu_k))^2 / lambda_i  +  |residual|^2 / sigma^2``

(the exact Mahalanobis distance under that covariance). The threshold is a quantile (default the
95th percentile) of the scores of validation items, so about 5% of in-distribution inputs are
flagged. Everything is stored as plain numbers in ``bundle.json``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["feature_layer", "capture_features", "fit_gaussian", "ood_scores", "DEFAULT_RANK",
           "DEFAULT_QUANTILE"]

DEFAULT_RANK = 32
DEFAULT_QUANTILE = 0.95
_SIG = 6  # significant digits stored


def feature_layer(model: nn.Module) -> nn.Linear | None:
    """The last ``nn.Linear`` of ``model`` (its input is the penultimate feature vector), or None."""
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m
    return last


@contextmanager
def capture_features(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect the input of :func:`feature_layer` on every forward pass inside the block."""
    layer = feature_layer(model)
    store: list[torch.Tensor] = []
    if layer is None:
        yield store
        return

    def hook(_m: nn.Module, args: tuple[Any, ...]) -> None:
        store.append(args[0].detach().float().flatten(1).cpu())

    handle = layer.register_forward_pre_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


def _round(a: np.ndarray) -> list[Any]:
    return np.vectorize(lambda v: float(f"{v:.{_SIG}g}"), otypes=[float])(np.asarray(a, np.float64)).tolist()


def fit_gaussian(feats: np.ndarray, labels: np.ndarray | None, val_feats: np.ndarray, *,
                 rank: int = DEFAULT_RANK, quantile: float = DEFAULT_QUANTILE) -> dict[str, Any]:
    """Fit the class-conditional Gaussian on ``feats`` (train) and threshold it on ``val_feats``.

    Args:
        feats: ``N×D`` training features.
        labels: class index per training item (None or multilabel: one Gaussian for all).
        val_feats: ``M×D`` validation features, for the threshold.
        rank: eigen-directions kept (the rest share one variance).
        quantile: share of validation items below the threshold.
    """
    f = np.asarray(feats, np.float64)
    n, d = f.shape
    lab = np.zeros(n, int) if labels is None or np.asarray(labels).ndim > 1 else np.asarray(labels, int)
    classes = [c for c in np.unique(lab) if (lab == c).sum() >= 2] or [int(lab[0])]
    means = np.stack([f[lab == c].mean(0) for c in classes])
    keep = np.isin(lab, classes)
    centred = f[keep] - means[np.searchsorted(classes, lab[keep])]
    cov = centred.T @ centred / max(1, len(centred) - len(classes))
    evals, evecs = np.linalg.eigh(cov)
    evals, evecs = evals[::-1].clip(min=0), evecs[:, ::-1]
    r = int(min(rank, d - 1 if d > 1 else 1, max(1, len(centred) - 1)))
    floor = max(1e-6 * float(evals[0]) if evals.size else 0.0, 1e-12)
    lam = evals[:r].clip(min=floor)
    # few items (n < D) leave the remaining directions with ~0 variance: shrink towards the kept ones
    sigma2 = max(float(evals[r:].mean()) if d > r else 0.0, 0.01 * float(lam.mean()))
    doc: dict[str, Any] = {
        "method": "mahalanobis_ppca", "layer": "input of the last linear layer", "dim": int(d), "rank": r,
        "classes": [int(c) for c in classes], "means": _round(means), "eigvecs": _round(evecs[:, :r].T),
        "eigvals": _round(lam), "residual_var": float(f"{max(sigma2, floor):.{_SIG}g}"),
        "fitted_on": f"train ({n} items)",
    }
    val = ood_scores(doc, val_feats)
    # no validation items: the training scores set it (a finite number; bundle.json refuses others)
    ref, on = (val, f"valid ({len(val)} items)") if len(val) else (ood_scores(doc, f), f"train ({n} items, no validation)")
    doc["threshold"] = float(np.quantile(ref, quantile))
    doc["threshold_quantile"] = quantile
    doc["threshold_on"] = on
    doc["valid_scores_median"] = float(np.median(val)) if len(val) else None
    return doc


def ood_scores(doc: dict[str, Any], feats: np.ndarray) -> np.ndarray:
    """Mahalanobis score of each row of ``feats`` (``N×D``) under the stored Gaussian."""
    f = np.asarray(feats, np.float64)
    if f.ndim != 2 or f.shape[1] != int(doc["dim"]):
        raise ValueError(f"features of shape {f.shape} do not match the stored dimension {doc['dim']}")
    means = np.asarray(doc["means"], np.float64)
    vecs = np.asarray(doc["eigvecs"], np.float64)  # r×D
    lam = np.asarray(doc["eigvals"], np.float64)
    s2 = float(doc["residual_var"])
    best = np.full(len(f), np.inf)
    for mu in means:
        delta = f - mu
        proj = delta @ vecs.T
        resid = (delta ** 2).sum(1) - (proj ** 2).sum(1)
        best = np.minimum(best, (proj ** 2 / lam).sum(1) + resid.clip(min=0) / s2)
    return best
