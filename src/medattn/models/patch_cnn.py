"""The PCam patch CNN: 3×3 conv stages 64-128-128-256, max-pool, dropout, dense 256.

``patch_cnn_baseline`` has no attention; ``patch_cnn_attention`` refines every conv stage with
an attention module from the registry (channel + spatial, i.e. CBAM, by default).
"""

from __future__ import annotations

import torch
from torch import nn

from medattn.attention import create_attention
from medattn.models.registry import register_model

__all__ = ["PatchCNN", "patch_cnn_baseline", "patch_cnn_attention"]


class PatchCNN(nn.Module):
    """Small CNN for histopathology patches.

    Args:
        num_classes: outputs (1 = a single binary logit).
        in_chans: input channels.
        widths: channels of the conv stages.
        convs_per_stage: 3×3 conv-BN-ReLU layers per stage (1 as in the seed notebook).
        attention: registry name applied after each stage's convolutions, or ``None``.
        dropout: dropout before the dense layer and before the classifier.
        hidden: width of the dense layer.
    """

    def __init__(
        self,
        *,
        num_classes: int = 1,
        in_chans: int = 3,
        widths: tuple[int, ...] = (64, 128, 128, 256),
        convs_per_stage: int = 1,
        attention: str | None = None,
        attention_kwargs: dict | None = None,
        dropout: float = 0.3,
        hidden: int = 256,
    ) -> None:
        super().__init__()
        stages: list[nn.Module] = []
        prev = in_chans
        for w in widths:
            layers: list[nn.Module] = []
            for _ in range(convs_per_stage):
                layers += [nn.Conv2d(prev, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
                prev = w
            layers.append(create_attention(attention, w, **(attention_kwargs or {})))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.pool = nn.MaxPool2d(2)
        self.num_features = prev
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(prev, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map of the last stage (after its attention), before pooling."""
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i < len(self.stages) - 1:
                x = self.pool(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


@register_model
def patch_cnn_baseline(
    *, num_classes: int = 1, in_chans: int = 3, width: float = 1.0, convs_per_stage: int = 1,
    dropout: float = 0.3, pretrained: str | None = None,
) -> PatchCNN:
    """Seed PCam CNN without attention (``width`` scales the 64-128-128-256 channels)."""
    model = PatchCNN(num_classes=num_classes, in_chans=in_chans, widths=_widths(width),
                     convs_per_stage=convs_per_stage, dropout=dropout)
    _maybe_load(model, pretrained)
    return model


@register_model
def patch_cnn_attention(
    *,
    num_classes: int = 1,
    in_chans: int = 3,
    attention: str = "cbam",
    attention_kwargs: dict | None = None,
    width: float = 1.0,
    convs_per_stage: int = 1,
    dropout: float = 0.3,
    pretrained: str | None = None,
) -> PatchCNN:
    """Seed PCam CNN with attention (default CBAM: channel + spatial) after every conv stage."""
    kw = {"reduction": 8} if attention == "cbam" and attention_kwargs is None else attention_kwargs
    model = PatchCNN(
        num_classes=num_classes, in_chans=in_chans, widths=_widths(width), convs_per_stage=convs_per_stage,
        attention=attention, attention_kwargs=kw, dropout=dropout,
    )
    _maybe_load(model, pretrained)
    return model


def _widths(width: float) -> tuple[int, ...]:
    from medattn.errors import ModelError

    if not 0 < width <= 4:
        raise ModelError(f"width must be in (0, 4], got {width}")
    return tuple(max(8, int(round(c * width / 8)) * 8) for c in (64, 128, 128, 256))


def _maybe_load(model: nn.Module, pretrained: str | None) -> None:
    if pretrained:
        from medattn.models.weights import apply_pretrained

        apply_pretrained(model, pretrained)
