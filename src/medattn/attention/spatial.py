"""CBAM spatial attention: channel mean and max → k×k conv → sigmoid map."""

from __future__ import annotations

import torch
from torch import nn

from medattn.attention.base import AttentionModule
from medattn.attention.registry import register_attention
from medattn.errors import ModelError

__all__ = ["SpatialAttention"]


@register_attention("spatial")
class SpatialAttention(AttentionModule):
    """CBAM spatial attention (Woo et al. 2018).

    Args:
        channels: input channels (unused by the map, kept for the common signature).
        kernel_size: odd convolution size ``k`` (7 in the paper).
    """

    attention_kind = "spatial"

    def __init__(self, channels: int, kernel_size: int = 7) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ModelError(f"kernel_size must be a positive odd number, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        desc = torch.cat([x.mean(1, keepdim=True), x.max(1, keepdim=True)[0]], dim=1)
        gate = torch.sigmoid(self.conv(desc))
        self._record(gate)
        return x * gate
