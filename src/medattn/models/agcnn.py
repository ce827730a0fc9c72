"""AG-CNN (Guan et al. 2018): global branch, attention-guided crop, local branch, fusion head.

``forward(x)`` returns the fusion logits (``B×num_classes``), so the model works as a plain
classifier for training loops and CAMs; :meth:`AGCNN.forward_all` returns the three logits and
the crop boxes. :meth:`AGCNN.set_stage` freezes branches for the paper's three-stage training
(global → local with the global branch frozen → fusion with both branches frozen).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from medattn.errors import ModelError
from medattn.models.agcnn_crop import attention_boxes, check_threshold, crop_boxes
from medattn.models.registry import create_model, register_model
from medattn.models.weights import imagenet_state_dict, load_state_dict_into, read_state_dict

__all__ = ["AGCNN", "AGCNNOutput", "agcnn", "AGCNN_BACKBONES", "AGCNN_STAGES"]

AGCNN_BACKBONES = ("densenet121", "resnet18", "resnet34", "resnet50", "efficientnet_v2_s")
AGCNN_STAGES = ("global", "local", "fusion", "all")


class AGCNNOutput(NamedTuple):
    """What :meth:`AGCNN.forward_all` returns (boxes: ``B×4`` input-pixel ``x1, y1, x2, y2``)."""

    global_logits: torch.Tensor
    local_logits: torch.Tensor
    fusion_logits: torch.Tensor
    boxes: torch.Tensor


class AGCNN(nn.Module):
    """Attention-guided CNN for multi-label chest X-rays.

    Args:
        num_classes: labels (14 for ChestX-ray14).
        in_chans: input channels.
        backbone: registered classifier used for both branches (same architecture, separate
            weights); one of :data:`AGCNN_BACKBONES`.
        threshold: mask threshold τ in (0, 1) (0.7 in the paper) or ``"otsu"``.
        crop_size: side of the resized crop fed to the local branch (224 in the paper).
        mask_size: grid on which the heatmap is thresholded (default: the input size).
        attention: optional attention mechanism inside both backbones.

    Attributes:
        cam_target_layer: the global branch's last feature module (CAMs live in input coordinates).
    """

    def __init__(
        self, *, num_classes: int = 14, in_chans: int = 3, backbone: str = "densenet121",
        threshold: float | str = 0.7, crop_size: int = 224, mask_size: tuple[int, int] | None = None,
        attention: Any = None,
    ) -> None:
        super().__init__()
        if backbone not in AGCNN_BACKBONES:
            raise ModelError(f"agcnn backbone must be one of {', '.join(AGCNN_BACKBONES)}, got '{backbone}'")
        if crop_size < 8:
            raise ModelError(f"crop_size must be >= 8 pixels, got {crop_size}")
        check_threshold(threshold)
        kw: dict[str, Any] = {"num_classes": num_classes, "in_chans": in_chans}
        if attention is not None:
            kw["attention"] = attention
        self.backbone = backbone
        self.global_branch = create_model(backbone, **kw)
        self.local_branch = create_model(backbone, **kw)
        nf = self.global_branch.num_features
        self.fusion = nn.Linear(2 * nf, num_classes)
        self.threshold = threshold
        self.crop_size = int(crop_size)
        self.mask_size = tuple(mask_size) if mask_size is not None else None
        self.cam_target_layer = f"global_branch.{self.global_branch.cam_target_layer}"
        self.stage = "all"

    def forward_all(self, x: torch.Tensor) -> AGCNNOutput:
        """Global, local and fusion logits and the crop boxes."""
        g_feat = self.global_branch.forward_features(x)
        g_pool = self.global_branch.forward_head(g_feat, pre_logits=True)
        g_logits = self.global_branch.forward_head(g_feat)
        with torch.no_grad():
            boxes = attention_boxes(g_feat, tuple(x.shape[-2:]), self.threshold, self.mask_size)
        crops = crop_boxes(x, boxes, self.crop_size)
        l_feat = self.local_branch.forward_features(crops)
        l_pool = self.local_branch.forward_head(l_feat, pre_logits=True)
        l_logits = self.local_branch.forward_head(l_feat)
        fusion = self.fusion(torch.cat([g_pool, l_pool], dim=1))
        return AGCNNOutput(g_logits, l_logits, fusion, boxes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fusion logits ``B×num_classes``."""
        return self.forward_all(x).fusion_logits

    def set_stage(self, stage: str) -> None:
        """Make only one part trainable: ``"global"``, ``"local"``, ``"fusion"`` or ``"all"``.

        Frozen branches also switch to eval mode (their BatchNorm statistics stay fixed) whenever
        the model is put in training mode.
        """
        if stage not in AGCNN_STAGES:
            raise ModelError(f"agcnn stage must be one of {', '.join(AGCNN_STAGES)}, got '{stage}'")
        self.stage = stage
        parts = {"global": self.global_branch, "local": self.local_branch, "fusion": self.fusion}
        for name, mod in parts.items():
            mod.requires_grad_(stage in ("all", name))
        self.train(self.training)

    def train(self, mode: bool = True) -> AGCNN:
        super().train(mode)
        if mode and self.stage != "all":
            for name, mod in (("global", self.global_branch), ("local", self.local_branch)):
                if name != self.stage:
                    mod.eval()
        return self


@register_model(task="agcnn")
def agcnn(
    *, num_classes: int = 14, in_chans: int = 3, backbone: str = "densenet121", threshold: float | str = 0.7,
    crop_size: int = 224, mask_size: tuple[int, int] | None = None, attention: Any = None,
    pretrained: str | None = None,
) -> AGCNN:
    """AG-CNN; ``pretrained="imagenet"`` or a backbone checkpoint initialises *both* branches,
    a saved AG-CNN (keys ``global_branch.*``) loads as a whole."""
    model = AGCNN(num_classes=num_classes, in_chans=in_chans, backbone=backbone, threshold=threshold,
                  crop_size=crop_size, mask_size=mask_size, attention=attention)
    if pretrained:
        if isinstance(pretrained, str) and pretrained.lower() == "imagenet":
            state, source = imagenet_state_dict(backbone), f"torchvision {backbone} ImageNet weights"
        else:
            state, source = read_state_dict(pretrained), str(pretrained)
        if any(k.startswith("global_branch.") for k in state):
            load_state_dict_into(model, state, source=source)
        else:
            load_state_dict_into(model.global_branch, state, source=source)
            load_state_dict_into(model.local_branch, state, source=source)
    return model
