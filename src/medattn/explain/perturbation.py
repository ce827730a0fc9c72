"""Perturbation faithfulness: deletion/insertion AUC (Petsiuk et al. 2018) and ROAD (Rong et al. 2022).

A faithful map names the pixels the model needs: deleting them first makes the target's
probability fall fast (low deletion AUC), inserting them first into a blurred image makes it
rise fast (high insertion AUC). ROAD removes pixels by noisy linear imputation (pytorch-grad-cam's
implementation) so the removal itself leaks less shape information than a constant fill.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medattn.errors import ConfigError
from medattn.explain.targets import BinaryLogitTarget, ClassTarget, SegmentationTarget
from medattn.models.outputs import probabilities

__all__ = ["ProbabilityTarget", "deletion_insertion", "road_scores"]


class ProbabilityTarget:
    """Wrap a logit target so it returns the target's probability (sigmoid or softmax).

    Args:
        target: a :mod:`medattn.explain.targets` object.
        activation: ``"sigmoid"`` (binary, multilabel, single-channel segmentation), ``"softmax"``
            (multiclass) or ``"none"``.
    """

    def __init__(self, target: object, activation: str = "sigmoid") -> None:
        if activation not in ("sigmoid", "softmax", "none"):
            raise ConfigError(f"unknown activation '{activation}'; valid: sigmoid, softmax, none")
        self.target = target
        self.activation = activation

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        t = self.target
        if self.activation == "none":
            return t(output)  # type: ignore[operator]
        task = "multiclass" if self.activation == "softmax" else "multilabel"
        if isinstance(t, BinaryLogitTarget):  # sigmoid(-z) = 1 - sigmoid(z): the negative class
            return probabilities(t(output).reshape(1, 1), "binary")[0, 0]
        if isinstance(t, ClassTarget):
            return probabilities(output.reshape(1, -1), task)[0, t.index]
        if isinstance(t, SegmentationTarget):
            one = t.single(output)
            if one is not None:
                prob = probabilities((one if t.index >= 1 else -one)[None], "segmentation")[0, 0]
            else:
                prob = probabilities(output[None], task)[0, t.index]
            if t.region is None:
                return prob.mean()
            r = t.region.to(prob.device, prob.dtype)
            return (prob * r).sum() / r.sum().clamp_min(1)
        return t(output)  # type: ignore[operator]


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    k = max(3, int(2 * round(3 * sigma) + 1))
    ax = torch.arange(k, dtype=x.dtype, device=x.device) - k // 2
    g = torch.exp(-(ax**2) / (2 * sigma**2))
    g = g / g.sum()
    c = x.shape[1]
    pad = k // 2
    y = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    y = F.conv2d(y, g.view(1, 1, 1, k).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(y, g.view(1, 1, k, 1).repeat(c, 1, 1, 1), groups=c)


@torch.no_grad()
def deletion_insertion(
    model: nn.Module,
    x: torch.Tensor,
    maps: np.ndarray,
    targets: Sequence[object],
    steps: int = 16,
    activation: str = "sigmoid",
    blur_sigma: float | None = None,
    batch_size: int = 32,
) -> dict[str, np.ndarray]:
    """Deletion and insertion curves and their AUCs, one per image.

    Deletion replaces the most salient pixels first with a zero (= the dataset mean after
    normalisation); insertion reveals them first on a blurred copy of the image.

    Args:
        model: the network.
        x: preprocessed images ``B×C×H×W``.
        maps: saliency ``B×H×W`` at the input's resolution.
        targets: one target per image (logit targets; turned into probabilities).
        steps: number of equal pixel fractions (``steps + 1`` points per curve).
        activation: ``sigmoid`` (binary/multilabel) or ``softmax`` (multiclass).
        blur_sigma: Gaussian blur of the insertion start image (default: 1/10 of the width).
        batch_size: perturbed images per forward pass.

    Returns:
        ``deletion_auc`` and ``insertion_auc`` (``B``, in [0, 1] for probabilities) and the
        ``deletion_curve`` / ``insertion_curve`` (``B×(steps+1)``).
    """
    maps = np.asarray(maps, dtype=np.float32)
    if maps.shape != (x.shape[0], *x.shape[-2:]):
        raise ConfigError(f"maps have shape {maps.shape}; need {(x.shape[0], *x.shape[-2:])} (one map per image)")
    if len(targets) != len(x):
        raise ConfigError(f"got {len(targets)} targets for {len(x)} images")
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    x = x.to(dev).float()
    h, w = x.shape[-2:]
    n = h * w
    sigma = blur_sigma or max(1.0, w / 10)
    fractions = np.linspace(0, 1, steps + 1)
    curves = {"deletion": np.zeros((len(x), steps + 1)), "insertion": np.zeros((len(x), steps + 1))}
    blurred = _blur(x, sigma)
    try:
        for i in range(len(x)):
            order = torch.from_numpy(np.argsort(-maps[i].reshape(-1), kind="stable").copy()).to(dev)
            rank = torch.empty(n, dtype=torch.long, device=dev)
            rank[order] = torch.arange(n, device=dev)
            keep_n = torch.as_tensor((fractions * n).round().astype(np.int64), device=dev)
            # masks[k] = pixels among the top keep_n[k] of the ranking
            masks = (rank[None, :] < keep_n[:, None]).view(-1, 1, h, w).to(x.dtype)
            score = ProbabilityTarget(targets[i], activation)
            for kind, start, fill in (("deletion", x[i], torch.zeros_like(x[i])), ("insertion", blurred[i], x[i])):
                vals = []
                for s in range(0, len(masks), batch_size):
                    m = masks[s : s + batch_size]
                    batch = start[None] * (1 - m) + fill[None] * m
                    vals += [float(score(o)) for o in model(batch)]
                curves[kind][i] = vals
    finally:
        model.train(was_training)
    auc = {f"{k}_auc": np.trapezoid(v, fractions, axis=1) for k, v in curves.items()}
    return {**auc, "deletion_curve": curves["deletion"], "insertion_curve": curves["insertion"]}


@torch.no_grad()
def road_scores(
    model: nn.Module,
    x: torch.Tensor,
    maps: np.ndarray,
    targets: Sequence[object],
    percentiles: Sequence[int] = (20, 40, 60, 80),
    activation: str = "sigmoid",
) -> dict[str, np.ndarray]:
    """ROAD scores (pytorch-grad-cam's imputation), averaged over removal ``percentiles``.

    Returns:
        Per image: ``morf`` (probability change when the most relevant pixels are removed: the
        lower the better), ``lerf`` (least relevant removed: near 0 is good) and ``combined``
        ``(lerf - morf) / 2`` (higher = more faithful).
    """
    from pytorch_grad_cam.metrics.road import (
        ROADLeastRelevantFirstAverage,
        ROADMostRelevantFirstAverage,
    )

    maps = np.asarray(maps, dtype=np.float32)
    if maps.shape != (x.shape[0], *x.shape[-2:]):
        raise ConfigError(f"maps have shape {maps.shape}; need {(x.shape[0], *x.shape[-2:])} (one map per image)")
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    tg = [ProbabilityTarget(t, activation) for t in targets]
    try:
        xx = x.to(dev).float()
        morf = ROADMostRelevantFirstAverage(list(percentiles))(xx, maps, tg, model)
        lerf = ROADLeastRelevantFirstAverage(list(percentiles))(xx, maps, tg, model)
    finally:
        model.train(was_training)
    morf, lerf = np.asarray(morf, np.float64).reshape(-1), np.asarray(lerf, np.float64).reshape(-1)
    return {"morf": morf, "lerf": lerf, "combined": (lerf - morf) / 2}
