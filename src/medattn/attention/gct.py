"""Gated Channel Transformation (Yang et al. 2020)."""

from __future__ import annotations

import torch
from torch import nn

from medattn.attention.base import AttentionModule
from medattn.attention.registry import register_attention

__all__ = ["GCT"]


@register_attention("gct")
class GCT(AttentionModule):
    """Gated Channel Transformation.

    ``s = α·sqrt(Σ_hw x² + ε)``, ``ŝ = γ·s / sqrt(mean_c s² + ε)``, ``out = x·(1 + tanh(ŝ + β))``
    with per-channel ``α = 1`` and ``γ = β = 0`` at initialisation, so a fresh GCT is the identity.

    Args:
        channels: input channels.
        eps: numerical floor inside both square roots.
    """

    attention_kind = "channel"

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.alpha * (x.pow(2).sum((2, 3), keepdim=True) + self.eps).sqrt()
        s_hat = self.gamma * s / (s.pow(2).mean(1, keepdim=True) + self.eps).sqrt()
        gate = 1.0 + torch.tanh(s_hat + self.beta)
        self._record(gate.flatten(1))
        return x * gate
