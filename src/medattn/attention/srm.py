"""Style-based Recalibration Module (Lee et al. 2019)."""

from __future__ import annotations

import torch
from torch import nn

from medattn.attention.base import AttentionModule
from medattn.attention.registry import register_attention

__all__ = ["SRM"]


@register_attention("srm")
class SRM(AttentionModule):
    """Style-based Recalibration: per-channel mean and std → channel-wise FC → BN → sigmoid.

    Each channel ``c`` gets ``z_c = w_c0·μ_c + w_c1·σ_c`` (a ``C×2`` weight, zero at init as in the
    paper), batch-normalised, and ``out = x·sigmoid(BN(z))``. The std is the population std over
    positions with ``eps`` inside the square root, so a 1×1 map is valid. Like any BatchNorm on
    pooled features, training mode needs a batch of at least 2.

    Args:
        channels: input channels.
        eps: floor added to the variance.
    """

    attention_kind = "channel"

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.cfc = nn.Parameter(torch.zeros(channels, 2))
        self.bn = nn.BatchNorm2d(channels)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)
        var, mean = torch.var_mean(flat, dim=2, correction=0)
        std = (var + self.eps).sqrt()
        z = mean * self.cfc[:, 0] + std * self.cfc[:, 1]  # B×C
        gate = torch.sigmoid(self.bn(z[:, :, None, None]))
        self._record(gate.flatten(1))
        return x * gate
