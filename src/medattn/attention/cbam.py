"""CBAM: channel attention followed by spatial attention."""

from __future__ import annotations

import torch
from torch import nn

from medattn.attention.channel import ChannelAttention
from medattn.attention.registry import register_attention
from medattn.attention.spatial import SpatialAttention

__all__ = ["CBAM"]


@register_attention("cbam")
class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al. 2018).

    Args:
        channels: input channels.
        reduction: channel-MLP ratio.
        kernel_size: spatial-attention convolution size.
    """

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction=reduction)
        self.spatial = SpatialAttention(channels, kernel_size=kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))
