"""Channel attention: CBAM channel gate, Squeeze-and-Excitation and ECA."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from medattn.attention.base import AttentionModule
from medattn.attention.registry import register_attention
from medattn.errors import ModelError

__all__ = [
    "ChannelAttention",
    "EfficientChannelAttention",
    "SqueezeExcitation",
    "eca_kernel_size",
    "reduced_channels",
]


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


class _SharedMLP(AttentionModule):
    """Two 1×1 convolutions with a ReLU between them (the bottleneck MLP of SE and CBAM)."""

    attention_kind = "channel"

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = reduced_channels(channels, reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=True)

    def mlp(self, pooled: torch.Tensor) -> torch.Tensor:
        """The bottleneck MLP on a pooled ``B×C×1×1`` descriptor."""
        return self.fc2(self.act(self.fc1(pooled)))


@register_attention("channel")
class ChannelAttention(_SharedMLP):
    """CBAM channel attention (Woo et al. 2018): ``x * sigmoid(MLP(avg) + MLP(max))``.

    Args:
        channels: input channels.
        reduction: MLP bottleneck ratio ``r``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # adaptive pooling has a much cheaper backward than ``amax`` on CPU
        gate = torch.sigmoid(self.mlp(F.adaptive_avg_pool2d(x, 1)) + self.mlp(F.adaptive_max_pool2d(x, 1)))
        self._record(gate.flatten(1))
        return x * gate


@register_attention("se")
class SqueezeExcitation(_SharedMLP):
    """Squeeze-and-Excitation (Hu et al. 2018): ``x * sigmoid(W2 relu(W1 avgpool(x)))``.

    Args:
        channels: input channels.
        reduction: bottleneck ratio ``r`` of the two fully connected (1×1 conv) layers.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.mlp(F.adaptive_avg_pool2d(x, 1)))
        self._record(gate.flatten(1))
        return x * gate


def eca_kernel_size(channels: int, gamma: float = 2.0, beta: float = 1.0) -> int:
    """ECA's adaptive kernel size: the odd number nearest ``|log2(C)/gamma + beta/gamma|``."""
    k = int(abs(math.log2(channels) / gamma + beta / gamma))
    return k if k % 2 else k + 1


@register_attention("eca")
class EfficientChannelAttention(AttentionModule):
    """Efficient Channel Attention (Wang et al. 2020): a 1-D convolution across pooled channels.

    Args:
        channels: input channels.
        kernel_size: odd 1-D kernel size; ``None`` picks it from ``channels`` as in the paper
            (``gamma=2, b=1``).
    """

    attention_kind = "channel"

    def __init__(self, channels: int, kernel_size: int | None = None) -> None:
        super().__init__()
        k = eca_kernel_size(channels) if kernel_size is None else kernel_size
        if k < 1 or k % 2 == 0:
            raise ModelError(f"eca kernel_size must be a positive odd number, got {k}")
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.adaptive_avg_pool2d(x, 1).flatten(1).unsqueeze(1)  # B×1×C
        gate = torch.sigmoid(self.conv(y)).squeeze(1)  # B×C
        self._record(gate)
        return x * gate[:, :, None, None]
