"""How a model's output is read: its main logits, and the one rule from logits to probabilities.

Every consumer (training validation, evaluation, bundles, tiling, trust checks, explanations,
ensembles, export parity) turns logits into probabilities through :func:`probabilities`, so a
number validated in training is the number every door serves.

A segmentation head is read by its ``seg_target`` (the recipe's ``task.seg_target``, stored in
``bundle.json``): ``binary`` and ``three_class`` heads are plain sigmoid/softmax heads; a ``hover``
head (HoVer-Net style: a nuclear-pixel logit and horizontal/vertical distances to each nucleus's
centre) becomes the four channels of :data:`HOVER_CHANNELS`, so channel 0 is the background
probability for every dense output.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from medattn.errors import ModelError

__all__ = ["main_logits", "probabilities", "activation", "probability_to_logit", "displacement_channels",
           "seg_target_of", "TASKS", "SEG_TARGETS", "HOVER_CHANNELS"]

TASKS = ("binary", "multiclass", "multilabel", "segmentation")
SEG_TARGETS = ("binary", "three_class", "hover")
HOVER_CHANNELS = ("background", "foreground", "horizontal", "vertical")
"""What :func:`probabilities` gives for a ``hover`` head: ``1 − p``, ``p = sigmoid(logit 0)``, and the
horizontal and vertical distance maps ``tanh(logits 1, 2)`` in [-1, 1] (0 on background)."""
_KEYS = ("fusion", "logits", "out", "semantic", "global")


def main_logits(out: object) -> torch.Tensor:
    """A tensor as is; the ``fusion``/``logits``/``out``/``semantic``/``global`` entry of a dict
    (AG-CNN, multi-head U-Net); or the first element of a tuple.

    Raises:
        ModelError: no tensor of logits can be found.
    """
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        for key in _KEYS:
            if isinstance(out.get(key), torch.Tensor):
                return out[key]
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise ModelError(f"cannot find the logits in a model output of type {type(out).__name__}")


def activation(task: str, n_out: int) -> Literal["softmax", "sigmoid"]:
    """``softmax`` over classes for multiclass tasks and multi-class segmentation heads, else
    ``sigmoid`` (binary: one logit; multilabel: one per finding; one-channel masks)."""
    if task not in TASKS:
        raise ModelError(f"unknown task '{task}'; one of {', '.join(TASKS)}")
    return "softmax" if task == "multiclass" or (task == "segmentation" and n_out > 1) else "sigmoid"


def probabilities(output: object, task: str, seg_target: str = "binary") -> torch.Tensor:
    """Probabilities of a model output (``B×K`` or ``B×K×H×W`` logits, or a dict/tuple holding
    them), in ``float32``: softmax over dimension 1 or sigmoid, by :func:`activation`.

    Args:
        output: the model output.
        task: one of :data:`TASKS`.
        seg_target: segmentation head kind (:data:`SEG_TARGETS`); ``hover`` turns the 3 logits
            into the 4 channels of :data:`HOVER_CHANNELS`.

    Raises:
        ModelError: an unknown task or head kind, or a hover output without 3 channels.
    """
    z = main_logits(output).float()
    n_out = int(z.shape[1]) if z.ndim > 1 else 1
    if seg_target not in SEG_TARGETS:
        raise ModelError(f"unknown segmentation head '{seg_target}'; one of {', '.join(SEG_TARGETS)}")
    if task == "segmentation" and seg_target == "hover":
        if z.ndim != 4 or n_out != 3:
            raise ModelError(f"a hover head outputs B×3×H×W logits (nuclear pixel, horizontal, vertical), "
                             f"got shape {tuple(z.shape)}")
        p = torch.sigmoid(z[:, :1])
        return torch.cat([1 - p, p, torch.tanh(z[:, 1:])], 1)
    return torch.softmax(z, 1) if activation(task, n_out) == "softmax" else torch.sigmoid(z)


def seg_target_of(meta: dict) -> str:
    """The segmentation head kind of a bundle's metadata (``recipe.task.seg_target``; ``binary``
    when absent, as in bundles written before heads were recorded)."""
    return str(((meta.get("recipe") or {}).get("task") or {}).get("seg_target") or "binary")


def displacement_channels(task: str, seg_target: str = "binary") -> tuple[int, int] | None:
    """``(horizontal, vertical)`` channels of :func:`probabilities` that form a displacement field
    (they change sign and swap when the image is flipped or turned), or ``None``."""
    return (2, 3) if task == "segmentation" and seg_target == "hover" else None


def probability_to_logit(p: float) -> float:
    """The logit of a sigmoid probability (a decision threshold on probabilities as a threshold on
    logits, e.g. for an exported graph without its sigmoid)."""
    q = min(max(float(p), 1e-12), 1 - 1e-12)
    return math.log(q / (1 - q))
