"""CBAM channel attention: average- and max-pooled descriptors through a shared MLP."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medattn.attention.base import AttentionModule
from medattn.attention.registry import register_attention
from medattn.errors import ModelError

__all__ = ["ChannelAttention", "reduced_channels"]


def reduced_channels(channels: int, reduction: int, min_channels: int = 1) -> int:
    """Hidden width ``channels // reduction`` with a clear error when it does not divide."""
    if reduction < 1:
        raise ModelError(f"reduction must be >= 1, got {reduction}")
    if channels % reduction != 0 and channels >= reduction:
        raise ModelError(
            f"channels={channels} is not divisible by reduction={reduction}; "
            "choose a reduction that divides the channel count"
        )
    return max(min_channels, channels // reduction)


@register_attention("channel")
class ChannelAttention(AttentionModule):
    """CBAM channel attention (Woo et al. 2018): ``x * sigmoid(MLP(avg) + MLP(max))``.

    Args:
        channels: input channels.
        reduction: MLP bottleneck ratio ``r``.
    """

    attention_kind = "channel"

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = reduced_channels(channels, reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # adaptive pooling has a much cheaper backward than ``amax`` on CPU
        avg = self.fc2(self.act(self.fc1(F.adaptive_avg_pool2d(x, 1))))
        mx = self.fc2(self.act(self.fc1(F.adaptive_max_pool2d(x, 1))))
        gate = torch.sigmoid(avg + mx)
        self._record(gate.flatten(1))
        return x * gate
