"""ResNet-18/34/50 from torchvision with attention inside every block or after every stage.

``placement="block"`` refines the residual branch of every BasicBlock/Bottleneck before the
addition (as in the CBAM and SE papers); ``placement="stage"`` appends one attention module to each
of the four stages (as in the cervical-cell CBAM-ResNet-50 project). The backbone is torchvision's
``ResNet``, so torchvision checkpoints load by name; attention tensors are reported as missing.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from medattn.attention import create_attention, get_attention_class
from medattn.errors import ModelError
from medattn.models.registry import register_model
from medattn.models.weights import apply_pretrained

__all__ = [
    "AttentionBasicBlock",
    "AttentionBottleneck",
    "AttentionResNet",
    "check_single_input_attention",
    "resnet18",
    "resnet34",
    "resnet50",
    "cbam_resnet50",
]

PLACEMENTS = ("block", "stage")


def check_single_input_attention(attention: Any, where: str) -> None:
    """Refuse an unknown name or a two-input gate where a one-input module is plugged in."""
    if attention is None or (isinstance(attention, str) and attention.lower() in ("", "none")):
        return
    cls = get_attention_class(attention)
    if getattr(cls, "num_inputs", 1) != 1:
        raise ModelError(
            f"attention '{attention}' takes two inputs (skip, gating) and only fits U-Net skips; "
            f"choose a one-input mechanism for {where}"
        )


def _add_residual(out: torch.Tensor, identity: torch.Tensor, attn: nn.Module) -> torch.Tensor:
    # in place only without attention (as torchvision); otherwise a hook on ``attn`` (e.g. a CAM
    # target) keeps the attention output it saw instead of seeing it overwritten
    if isinstance(attn, nn.Identity):
        out += identity
        return out
    return out + identity


class AttentionBasicBlock(BasicBlock):
    """torchvision ``BasicBlock`` whose residual branch passes through ``self.attn``."""

    def __init__(self, *args: Any, attention: Any = None, attention_kwargs: dict | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.attn = create_attention(attention, self.bn2.num_features, **(attention_kwargs or {}))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.attn(self.bn2(self.conv2(out)))
        return self.relu(_add_residual(out, identity, self.attn))


class AttentionBottleneck(Bottleneck):
    """torchvision ``Bottleneck`` whose residual branch passes through ``self.attn``."""

    def __init__(self, *args: Any, attention: Any = None, attention_kwargs: dict | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.attn = create_attention(attention, self.bn3.num_features, **(attention_kwargs or {}))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.attn(self.bn3(self.conv3(out)))
        return self.relu(_add_residual(out, identity, self.attn))


class AttentionResNet(ResNet):
    """torchvision ``ResNet`` with pluggable attention and any number of input channels.

    Args:
        block: :class:`AttentionBasicBlock` or :class:`AttentionBottleneck`.
        layers: blocks per stage, e.g. ``[3, 4, 6, 3]``.
        num_classes: outputs of the linear classifier.
        in_chans: input channels.
        attention: registry name or class (``None`` = plain ResNet).
        attention_kwargs: options of the mechanism (e.g. ``{"reduction": 16}``).
        placement: ``"block"`` or ``"stage"``.

    Attributes:
        num_features: channels of the last feature map.
        cam_target_layer: ``"layer4"``, the attention-refined last stage.
    """

    def __init__(
        self,
        block: type[AttentionBasicBlock] | type[AttentionBottleneck],
        layers: list[int],
        *,
        num_classes: int,
        in_chans: int = 3,
        attention: Any = None,
        attention_kwargs: dict | None = None,
        placement: str = "block",
    ) -> None:
        if placement not in PLACEMENTS:
            raise ModelError(f"placement must be one of {', '.join(PLACEMENTS)}, got '{placement}'")
        if in_chans < 1:
            raise ModelError(f"in_chans must be >= 1, got {in_chans}")
        check_single_input_attention(attention, "ResNet")
        in_block = attention if placement == "block" else None
        factory: Callable[..., nn.Module] = partial(
            block, attention=in_block, attention_kwargs=attention_kwargs
        )
        factory.expansion = block.expansion  # type: ignore[attr-defined]
        super().__init__(factory, layers, num_classes=num_classes)  # type: ignore[arg-type]
        if in_chans != 3:
            self.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        if placement == "stage" and attention is not None:
            for i, name in enumerate(("layer1", "layer2", "layer3", "layer4")):
                stage: nn.Sequential = getattr(self, name)
                ch = 64 * 2**i * block.expansion
                stage.append(create_attention(attention, ch, **(attention_kwargs or {})))
        self.num_features = 512 * block.expansion
        self.cam_target_layer = "layer4"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The (attention-refined) ``layer4`` feature map."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool, then the classifier unless ``pre_logits``."""
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _build(
    arch: str, block: Any, layers: list[int], *, num_classes: int, in_chans: int, attention: Any,
    attention_kwargs: dict | None, placement: str, pretrained: str | None,
) -> AttentionResNet:
    model = AttentionResNet(
        block, layers, num_classes=num_classes, in_chans=in_chans, attention=attention,
        attention_kwargs=attention_kwargs, placement=placement,
    )
    apply_pretrained(model, pretrained, arch=arch)
    return model


@register_model
def resnet18(
    *, num_classes: int = 1000, in_chans: int = 3, attention: Any = None,
    attention_kwargs: dict | None = None, placement: str = "block", pretrained: str | None = None,
) -> AttentionResNet:
    """ResNet-18 (torchvision layout), optional attention; ``pretrained`` None | "imagenet" | path."""
    return _build("resnet18", AttentionBasicBlock, [2, 2, 2, 2], num_classes=num_classes, in_chans=in_chans,
                  attention=attention, attention_kwargs=attention_kwargs, placement=placement, pretrained=pretrained)


@register_model
def resnet34(
    *, num_classes: int = 1000, in_chans: int = 3, attention: Any = None,
    attention_kwargs: dict | None = None, placement: str = "block", pretrained: str | None = None,
) -> AttentionResNet:
    """ResNet-34 (torchvision layout), optional attention; ``pretrained`` None | "imagenet" | path."""
    return _build("resnet34", AttentionBasicBlock, [3, 4, 6, 3], num_classes=num_classes, in_chans=in_chans,
                  attention=attention, attention_kwargs=attention_kwargs, placement=placement, pretrained=pretrained)


@register_model
def resnet50(
    *, num_classes: int = 1000, in_chans: int = 3, attention: Any = None,
    attention_kwargs: dict | None = None, placement: str = "block", pretrained: str | None = None,
) -> AttentionResNet:
    """ResNet-50 (torchvision v1.5 bottleneck), optional attention; ``pretrained`` None | "imagenet" | path."""
    return _build("resnet50", AttentionBottleneck, [3, 4, 6, 3], num_classes=num_classes, in_chans=in_chans,
                  attention=attention, attention_kwargs=attention_kwargs, placement=placement, pretrained=pretrained)


@register_model
def cbam_resnet50(
    *, num_classes: int = 1000, in_chans: int = 3, attention: Any = "cbam",
    attention_kwargs: dict | None = None, placement: str = "block", pretrained: str | None = None,
) -> AttentionResNet:
    """CBAM-ResNet-50 (Woo et al. 2018): CBAM (r=16, k=7) in every bottleneck by default.

    ``placement="stage"`` puts one CBAM after each stage instead. ``pretrained="imagenet"`` loads
    torchvision's ResNet-50 weights into the backbone; the CBAM modules keep their fresh init.
    """
    return _build("resnet50", AttentionBottleneck, [3, 4, 6, 3], num_classes=num_classes, in_chans=in_chans,
                  attention=attention, attention_kwargs=attention_kwargs, placement=placement, pretrained=pretrained)
