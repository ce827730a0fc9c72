"""How a model's output is read: its main logits, and the one rule from logits to probabilities.

Every consumer (training validation, evaluation, bundles, tiling, trust checks, explanations,
ensembles, export parity) turns logits into probabilities through :func:`probabilities`, so a
number validated in training is the number every door serves.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from medattn.errors import ModelError

__all__ = ["main_logits", "probabilities", "activation", "probability_to_logit", "TASKS"]

TASKS = ("binary", "multiclass", "multilabel", "segmentation")
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


def probabilities(output: object, task: str) -> torch.Tensor:
    """Probabilities of a model output (``B×K`` or ``B×K×H×W`` logits, or a dict/tuple holding
    them), in ``float32``: softmax over dimension 1 or sigmoid, by :func:`activation`."""
    z = main_logits(output).float()
    n_out = int(z.shape[1]) if z.ndim > 1 else 1
    return torch.softmax(z, 1) if activation(task, n_out) == "softmax" else torch.sigmoid(z)


def probability_to_logit(p: float) -> float:
    """The logit of a sigmoid probability (a decision threshold on probabilities as a threshold on
    logits, e.g. for an exported graph without its sigmoid)."""
    q = min(max(float(p), 1e-12), 1 - 1e-12)
    return math.log(q / (1 - q))
