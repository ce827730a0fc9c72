"""Residual U-Net with attention on the skip connections (oral-unet-attention pipeline).

Output: ``B×K×H×W`` logits at the input resolution (any input size: the input is padded to a
multiple of ``2**depth`` and the output cropped back). ``K`` depends on ``head``:

* ``"semantic"``: ``K = num_classes`` (1 = a binary foreground logit for a sigmoid; >1 = classes
  for a softmax);
* ``"boundary"``: ``K = num_classes + 1``; the last channel is a separate boundary logit (sigmoid)
  for instance separation;
* ``"3class"``: ``K = 3`` softmax classes background / inside / boundary;
* ``"hover"``: ``K = 3``: a nuclear-pixel logit (sigmoid) and the horizontal and vertical
  distance maps to each nucleus's centre (HoVer-Net; read by
  :func:`medattn.models.outputs.probabilities` with ``seg_target="hover"``).

``model.channel_names`` names the ``K`` channels and ``model.head_kind`` the choice, so losses,
metrics and post-processing read them instead of guessing.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medattn.attention import AttentionGate, create_attention
from medattn.errors import ModelError
from medattn.models.registry import register_model
from medattn.models.resnet import check_single_input_attention
from medattn.models.weights import apply_pretrained

__all__ = ["ResidualBlock", "UNet", "unet", "UNET_HEADS"]

UNET_HEADS = ("semantic", "boundary", "3class", "hover")
_GATE_NAMES = ("ag", "attention_gate")


class ResidualBlock(nn.Module):
    """Two 3×3 conv-BN layers with a (projected) identity shortcut, then ReLU."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + self.shortcut(x))


class UNet(nn.Module):
    """Residual encoder/decoder with optional attention on every skip connection.

    Args:
        num_classes: semantic classes (see the module docstring for the output channels).
        in_chans: input channels.
        depth: number of 2× downsamplings (1-6).
        width: channels of the first level; level ``i`` has ``width·2**i``.
        skip_attention: ``"none"``, ``"ag"`` (Oktay attention gate, gated by the coarser decoder
            features), ``"gct"``, ``"srm"`` or any other one-input registry mechanism.
        attention_kwargs: options of the skip attention.
        head: ``"semantic"``, ``"boundary"``, ``"3class"`` or ``"hover"``.

    Attributes:
        out_channels: ``K``; channel_names: names of the ``K`` channels; cam_target_layer:
        ``"decoders.0"``, the last decoder block.
    """

    def __init__(
        self, *, num_classes: int = 1, in_chans: int = 3, depth: int = 4, width: int = 32,
        skip_attention: str | None = "none", attention_kwargs: dict | None = None, head: str = "semantic",
    ) -> None:
        super().__init__()
        if not 1 <= depth <= 6:
            raise ModelError(f"unet depth must be between 1 and 6, got {depth}")
        if width < 1 or in_chans < 1:
            raise ModelError(f"unet width and in_chans must be >= 1, got {width} and {in_chans}")
        if head not in UNET_HEADS:
            raise ModelError(f"unet head must be one of {', '.join(UNET_HEADS)}, got '{head}'")
        if head in ("3class", "hover") and num_classes not in (1, 3):
            what = "background/inside/boundary" if head == "3class" else "nuclear pixel/horizontal/vertical"
            raise ModelError(f"head='{head}' outputs {what}; num_classes must be 1 or 3, got {num_classes}")
        name = "none" if skip_attention is None else str(skip_attention).lower()
        self.gated = name in _GATE_NAMES
        if not self.gated:
            check_single_input_attention(name, "U-Net skips (use 'ag' for the attention gate)")
        widths = [width * 2**i for i in range(depth + 1)]
        self.depth = depth
        self.encoders = nn.ModuleList(
            [ResidualBlock(in_chans, widths[0])] + [ResidualBlock(widths[i - 1], widths[i]) for i in range(1, depth + 1)]
        )
        self.pool = nn.MaxPool2d(2)
        self.ups = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(depth))
        akw = attention_kwargs or {}
        self.skip_attn = nn.ModuleList(
            AttentionGate(widths[i], gating_channels=widths[i + 1], **akw) if self.gated
            else create_attention(name, widths[i], **akw)
            for i in range(depth)
        )
        self.decoders = nn.ModuleList(ResidualBlock(2 * widths[i], widths[i]) for i in range(depth))
        if head == "semantic":
            self.channel_names = [f"class_{i}" for i in range(num_classes)] if num_classes > 1 else ["foreground"]
        elif head == "boundary":
            base = [f"class_{i}" for i in range(num_classes)] if num_classes > 1 else ["foreground"]
            self.channel_names = [*base, "boundary"]
        elif head == "hover":
            self.channel_names = ["foreground", "horizontal", "vertical"]
        else:
            self.channel_names = ["background", "inside", "boundary"]
        self.head_kind = head
        self.out_channels = len(self.channel_names)
        self.head = nn.Conv2d(widths[0], self.out_channels, 1)
        self.cam_target_layer = "decoders.0"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = 2**self.depth
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        skips: list[torch.Tensor] = []
        feat = x
        for i, enc in enumerate(self.encoders):
            feat = enc(feat if i == 0 else self.pool(feat))
            skips.append(feat)
        feat = skips.pop()
        for i in reversed(range(self.depth)):
            skip = self.skip_attn[i](skips[i], feat) if self.gated else self.skip_attn[i](skips[i])
            feat = self.decoders[i](torch.cat([self.ups[i](feat), skip], dim=1))
        out = self.head(feat)
        return out[..., :h, :w] if (ph or pw) else out


@register_model(task="segmentation")
def unet(
    *, num_classes: int = 1, in_chans: int = 3, depth: int = 4, width: int = 32,
    skip_attention: str | None = "none", attention_kwargs: dict | None = None, head: str = "semantic",
    attention: Any = None, pretrained: str | None = None,
) -> UNet:
    """Residual U-Net; ``attention`` is an alias of ``skip_attention``; ``pretrained``: a weights path."""
    if attention is not None:
        if skip_attention not in (None, "none") and skip_attention != attention:
            raise ModelError("give either attention= or skip_attention= for unet, not both")
        skip_attention = attention
    model = UNet(num_classes=num_classes, in_chans=in_chans, depth=depth, width=width,
                 skip_attention=skip_attention, attention_kwargs=attention_kwargs, head=head)
    apply_pretrained(model, pretrained)
    return model
