"""Per-prediction uncertainty: predictive entropy, test-time-augmentation disagreement, MC dropout.

- ``entropy``: Shannon entropy of the predicted distribution divided by its maximum (0 = certain,
  1 = uniform); multilabel: the mean over findings of each finding's binary entropy.
- ``tta_std``: the largest standard deviation, over classes, of the probabilities of the 8
  rotated/mirrored views (bundles trained with test-time augmentation).
- MC dropout (Gal & Ghahramani 2016): the dropout layers stay active for ``samples`` forward
  passes; ``mc_std`` is the largest standard deviation over classes and ``mutual_information``
  the epistemic part of the entropy (normalised like ``entropy``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["normalised_entropy", "has_dropout", "mc_dropout", "view_probabilities", "MAX_MC_SAMPLES"]

MAX_MC_SAMPLES = 64
_EPS = 1e-12


def _as_dist(p: np.ndarray, task: str) -> np.ndarray:
    """``N×K`` class distributions (binary/multilabel: ``N×K×2`` per output)."""
    p = np.asarray(p, np.float64)
    if task == "binary":
        p = p.reshape(len(p), -1)[:, :1]
    if task in ("binary", "multilabel"):
        return np.stack([1 - p, p], -1)
    return p


def normalised_entropy(p: np.ndarray, task: str) -> np.ndarray:
    """Entropy / max entropy per item (``p``: ``N`` binary, ``N×K`` otherwise)."""
    d = _as_dist(p, task).clip(_EPS, 1)
    h = -(d * np.log(d)).sum(-1) / np.log(d.shape[-1])
    return h.mean(-1) if h.ndim == 2 else h


def has_dropout(model: nn.Module) -> bool:
    """True when ``model`` has a dropout layer with a non-zero rate."""
    return any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules())


@contextmanager
def _dropout_on(model: nn.Module):  # noqa: ANN202
    layers = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    states = [m.training for m in layers]
    try:
        for m in layers:
            m.train()
        yield
    finally:
        for m, s in zip(layers, states, strict=True):
            m.train(s)


@torch.no_grad()
def mc_dropout(probs_of: Callable[[torch.Tensor], torch.Tensor], model: nn.Module, x: torch.Tensor,
               samples: int, task: str, seed: int = 0) -> dict[str, np.ndarray]:
    """``samples`` forward passes with dropout on → mean probabilities, ``mc_std`` and
    ``mutual_information`` per item (``x`` already on the model's device)."""
    samples = int(min(max(samples, 2), MAX_MC_SAMPLES))
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # the same image gives the same answer
    try:
        with _dropout_on(model):
            draws = np.stack([probs_of(x).float().cpu().numpy() for _ in range(samples)])  # S×B×K
    finally:
        torch.random.set_rng_state(gen_state)
    if task == "binary":
        draws = draws.reshape(samples, draws.shape[1], -1)[..., :1]
    mean = draws.mean(0)
    std = draws.std(0).max(-1)
    flat = mean[:, 0] if task == "binary" else mean
    total = normalised_entropy(flat, task)
    each = np.stack([normalised_entropy(d[:, 0] if task == "binary" else d, task) for d in draws])
    return {"mean": flat, "mc_std": std, "mutual_information": (total - each.mean(0)).clip(min=0)}


@torch.no_grad()
def view_probabilities(probs_of: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> np.ndarray:
    """Probabilities of the 8 dihedral views of ``x``: ``8×B×K``."""
    from medattn.infer.tta import DIHEDRAL

    out = []
    for k, flip in DIHEDRAL:
        v = x.flip(-1) if flip else x
        v = torch.rot90(v, k, dims=(-2, -1)) if k else v
        out.append(probs_of(v).float().cpu().numpy().reshape(len(x), -1))
    return np.stack(out)


def tta_std(views: np.ndarray) -> np.ndarray:
    """Largest standard deviation over classes of the views' probabilities, per item."""
    return np.asarray(views).std(0).max(-1)


def summary(values: dict[str, Any]) -> dict[str, float]:
    """Round the per-item uncertainty numbers for JSON."""
    return {k: round(float(v), 6) for k, v in values.items()}
