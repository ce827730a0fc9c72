"""DenseNet-121 (torchvision features) with optional attention: the AG-CNN backbone."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.models import densenet121 as tv_densenet121

from medattn.attention import create_attention
from medattn.errors import ModelError
from medattn.models.registry import register_model
from medattn.models.resnet import check_single_input_attention
from medattn.models.weights import apply_pretrained

__all__ = ["DenseNet121", "densenet121"]


class DenseNet121(nn.Module):
    """torchvision DenseNet-121 features → ReLU → optional attention → pool → linear classifier.

    Args:
        num_classes: outputs of the classifier (14 for ChestX-ray14).
        in_chans: input channels (``features.conv0`` is rebuilt when not 3).
        attention: registry name or class applied to the last (1024-channel) map, or ``None``.
        attention_kwargs: options of the mechanism.

    Parameter names follow torchvision (``features.*``, ``classifier.*``); old-style torchvision
    checkpoint names (``norm.1``) are renamed on load.
    """

    def __init__(
        self, *, num_classes: int = 1000, in_chans: int = 3, attention: Any = None,
        attention_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        if in_chans < 1:
            raise ModelError(f"in_chans must be >= 1, got {in_chans}")
        check_single_input_attention(attention, "DenseNet-121")
        base = tv_densenet121(weights=None)
        self.features = base.features
        if in_chans != 3:
            self.features.conv0 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(self.features.conv0.weight)
        self.num_features = base.classifier.in_features
        self.act = nn.ReLU(inplace=False)
        self.attn = create_attention(attention, self.num_features, **(attention_kwargs or {}))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(self.num_features, num_classes)
        nn.init.zeros_(self.classifier.bias)
        self.cam_target_layer = "act" if isinstance(self.attn, nn.Identity) else "attn"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The rectified (attention-refined) last dense-block map."""
        return self.attn(self.act(self.features(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool, then the classifier unless ``pre_logits``."""
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def densenet121(
    *, num_classes: int = 1000, in_chans: int = 3, attention: Any = None, attention_kwargs: dict | None = None,
    pretrained: str | None = None,
) -> DenseNet121:
    """DenseNet-121; ``pretrained`` None | "imagenet" | weights path."""
    model = DenseNet121(num_classes=num_classes, in_chans=in_chans, attention=attention,
                        attention_kwargs=attention_kwargs)
    apply_pretrained(model, pretrained, arch="densenet121")
    return model
