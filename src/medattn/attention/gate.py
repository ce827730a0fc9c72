"""Additive attention gate for U-Net skip connections (Oktay et al. 2018)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medattn.attention.base import AttentionModule
from medattn.attention.registry import register_attention
from medattn.errors import ModelError

__all__ = ["AttentionGate"]


@register_attention("attention_gate")
class AttentionGate(AttentionModule):
    """Two-input attention gate: the skip features ``x`` are weighted by a map computed from
    ``x`` and the coarser gating signal ``g``.

    ``q = ψᵀ·relu(W_xᵀ·x + W_gᵀ·g + b_g) + b_ψ``, ``α = sigmoid(q)``, ``out = x·α``
    (Oktay et al. 2018, eq. 1-2), with ``W_x``, ``W_g``, ``ψ`` 1×1 convolutions. When ``g`` is
    coarser than ``x``, ``W_g·g`` is resized bilinearly to ``x``'s grid, so ``α`` has the skip
    resolution. The recorded map is ``α`` (``B×1×H×W``). Call as ``gate(x, g)``.

    Args:
        channels: channels of the skip features ``x``.
        gating_channels: channels of ``g`` (default ``channels``).
        inter_channels: width of the intermediate space (default ``max(1, channels // 2)``).
    """

    attention_kind = "spatial"
    num_inputs = 2

    def __init__(
        self, channels: int, gating_channels: int | None = None, inter_channels: int | None = None
    ) -> None:
        super().__init__()
        gating_channels = channels if gating_channels is None else gating_channels
        inter = max(1, channels // 2) if inter_channels is None else inter_channels
        if gating_channels < 1 or inter < 1:
            raise ModelError(
                f"attention_gate needs gating_channels >= 1 and inter_channels >= 1, "
                f"got {gating_channels} and {inter}"
            )
        self.w_x = nn.Conv2d(channels, inter, 1, bias=False)
        self.w_g = nn.Conv2d(gating_channels, inter, 1, bias=True)
        self.psi = nn.Conv2d(inter, 1, 1, bias=True)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        gx = self.w_g(g)
        if gx.shape[-2:] != x.shape[-2:]:
            gx = F.interpolate(gx, size=x.shape[-2:], mode="bilinear", align_corners=False)
        alpha = torch.sigmoid(self.psi(F.relu(self.w_x(x) + gx)))
        self._record(alpha)
        return x * alpha
