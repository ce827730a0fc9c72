"""The main logits of a model output, whatever form the model returns them in."""

from __future__ import annotations

import torch

from medattn.errors import ModelError

__all__ = ["main_logits"]

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
