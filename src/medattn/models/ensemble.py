"""An equal-weight ensemble of same-architecture models (e.g. the K models of a cross-validation).

The ensemble returns the logits of the *mean probability* of its members (log-odds of the mean
sigmoid, or the log of the mean softmax), so every consumer that applies a sigmoid/softmax to a
model's logits (bundles, evaluation, serving, export) gets the averaged probabilities unchanged.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from medattn.errors import ModelError
from medattn.models.outputs import probabilities
from medattn.models.registry import create_model, register_model

__all__ = ["ProbabilityMeanEnsemble", "ensemble"]

_EPS = 1e-6


class ProbabilityMeanEnsemble(nn.Module):
    """Members' probabilities averaged; output = logits of that mean.

    Args:
        members: models with the same output shape.
        activation: ``sigmoid`` (binary, multilabel) or ``softmax`` (multiclass).
    """

    def __init__(self, members: list[nn.Module], activation: Literal["sigmoid", "softmax"]) -> None:
        super().__init__()
        if not members:
            raise ModelError("an ensemble needs at least one member model")
        self.members = nn.ModuleList(members)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        task = "multiclass" if self.activation == "softmax" else "multilabel"
        p = torch.stack([probabilities(m(x), task) for m in self.members]).mean(0).clamp(_EPS, 1 - _EPS)
        return torch.log(p) if self.activation == "softmax" else torch.log(p) - torch.log1p(-p)


@register_model
def ensemble(*, member: dict[str, Any] | None = None, n_members: int = 2,
             activation: Literal["sigmoid", "softmax"] = "sigmoid", num_classes: int | None = None,
             ) -> ProbabilityMeanEnsemble:
    """``n_members`` copies of registry model ``member`` (``{"name", "kwargs"}``; default the seed
    patch CNN), averaged. ``num_classes`` sets the member's when it gives none, else must match it.
    """
    member = member or {"name": "patch_cnn_baseline", "kwargs": {}}
    if n_members < 1:
        raise ModelError(f"n_members must be >= 1, got {n_members}")
    if activation not in ("sigmoid", "softmax"):
        raise ModelError(f"activation must be sigmoid or softmax, got {activation!r}")
    kw = dict(member.get("kwargs", {}))
    kw.pop("pretrained", None)
    if num_classes is not None and kw.get("num_classes", num_classes) != num_classes:
        raise ModelError(f"num_classes {num_classes} differs from the member's {kw.get('num_classes')}")
    if num_classes is not None:
        kw["num_classes"] = num_classes
    return ProbabilityMeanEnsemble([create_model(member["name"], **kw) for _ in range(n_members)], activation)
