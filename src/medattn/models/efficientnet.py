"""EfficientNetV2-S (torchvision features) with the IDC head and optional attention."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.models import efficientnet_v2_s as tv_efficientnet_v2_s

from medattn.attention import create_attention
from medattn.errors import ModelError
from medattn.models.registry import register_model
from medattn.models.resnet import check_single_input_attention
from medattn.models.weights import apply_pretrained

__all__ = ["EfficientNetV2S", "efficientnet_v2_s"]


class EfficientNetV2S(nn.Module):
    """torchvision EfficientNetV2-S features, optional attention on the 1280-channel map, and the
    IDC head ``Dropout(p) → SELU → Linear(1280 → num_classes)``.

    Args:
        num_classes: outputs (1 = a single binary logit, as in the IDC pipeline).
        in_chans: input channels (the stem convolution is rebuilt when not 3).
        attention: registry name or class applied to the last feature map, or ``None``.
        attention_kwargs: options of the mechanism.
        dropout: dropout of the head (0.2 in the IDC pipeline).
        stochastic_depth: torchvision's stochastic-depth probability.

    Parameter names follow torchvision (``features.*``), so its checkpoints load by name; the
    head (``classifier.2``) is always new.
    """

    def __init__(
        self, *, num_classes: int = 1, in_chans: int = 3, attention: Any = None,
        attention_kwargs: dict | None = None, dropout: float = 0.2, stochastic_depth: float = 0.2,
    ) -> None:
        super().__init__()
        if in_chans < 1:
            raise ModelError(f"in_chans must be >= 1, got {in_chans}")
        if not 0.0 <= dropout < 1.0:
            raise ModelError(f"dropout must be in [0, 1), got {dropout}")
        check_single_input_attention(attention, "EfficientNetV2-S")
        self.features = tv_efficientnet_v2_s(weights=None, stochastic_depth_prob=stochastic_depth).features
        if in_chans != 3:
            old = self.features[0][0]
            self.features[0][0] = nn.Conv2d(in_chans, old.out_channels, 3, stride=2, padding=1, bias=False)
            nn.init.kaiming_normal_(self.features[0][0].weight, mode="fan_out")
        self.num_features = 1280
        self.attn = create_attention(attention, self.num_features, **(attention_kwargs or {}))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.SELU(), nn.Linear(self.num_features, num_classes))
        self.cam_target_layer = "features" if isinstance(self.attn, nn.Identity) else "attn"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The (attention-refined) 1280-channel feature map."""
        return self.attn(self.features(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool, then the IDC head unless ``pre_logits``."""
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def efficientnet_v2_s(
    *, num_classes: int = 1, in_chans: int = 3, attention: Any = None, attention_kwargs: dict | None = None,
    dropout: float = 0.2, pretrained: str | None = None,
) -> EfficientNetV2S:
    """EfficientNetV2-S with the IDC head; ``pretrained`` None | "imagenet" | weights path."""
    model = EfficientNetV2S(
        num_classes=num_classes, in_chans=in_chans, attention=attention,
        attention_kwargs=attention_kwargs, dropout=dropout,
    )
    apply_pretrained(model, pretrained, arch="efficientnet_v2_s")
    return model
