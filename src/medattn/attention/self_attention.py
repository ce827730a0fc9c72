"""Dot-product self-attention over spatial positions (non-local / SAGAN style)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medattn.attention.base import AttentionModule
from medattn.attention.channel import reduced_channels
from medattn.attention.registry import register_attention

__all__ = ["SelfAttention2d"]


@register_attention("self_attention")
class SelfAttention2d(AttentionModule):
    """Single-head scaled dot-product attention between all ``H·W`` positions, residual output.

    ``q = Wq x``, ``k = Wk x`` (``C/r`` channels), ``v = Wv x`` (``C`` channels);
    ``out = x + γ·softmax(qᵀk/√d)·v`` with ``γ = 0`` at initialisation (the block starts as the
    identity, as in SAGAN). The recorded map (``B×1×H×W``) is the attention each position
    receives, averaged over all queries; it is computed only while recording, otherwise the fused
    ``scaled_dot_product_attention`` kernel is used.

    Args:
        channels: input channels.
        reduction: ratio ``r`` of the query/key width.
    """

    attention_kind = "spatial"

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        inner = reduced_channels(channels, reduction)
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2).unsqueeze(1)  # B×1×N×d
        k = self.key(x).flatten(2).transpose(1, 2).unsqueeze(1)
        v = self.value(x).flatten(2).transpose(1, 2).unsqueeze(1)  # B×1×N×C
        if self.record_attention:
            scale = q.shape[-1] ** -0.5
            attn = torch.softmax(q @ k.transpose(-2, -1) * scale, dim=-1)  # B×1×N×N
            out = attn @ v
            self._record(attn.mean(dim=2).reshape(b, 1, h, w))
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        out = out.squeeze(1).transpose(1, 2).reshape(b, c, h, w)
        return x + self.gamma * out
