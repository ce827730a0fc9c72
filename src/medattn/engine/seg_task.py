"""Semantic segmentation: CE/BCE + soft Dice loss, validation Dice and IoU.

Targets come as ``B×H×W`` integer masks (0 = background; instance labels are fine). With
``seg_target="three_class"`` the target becomes background / interior / boundary, the head
that separates touching nuclei for instance segmentation.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medattn.engine.tasks import BaseTask
from medattn.models.outputs import probabilities

__all__ = ["SegmentationTask", "three_class_target", "soft_dice_loss", "foreground_prob"]


def three_class_target(mask: torch.Tensor) -> torch.Tensor:
    """Background (0), interior (1) and boundary (2) from a (instance or binary) label mask.

    A foreground pixel is boundary when a 3×3 neighbour carries another label.
    """
    m = mask.float().unsqueeze(1)
    mx = F.max_pool2d(m, 3, 1, 1)
    mn = -F.max_pool2d(-m, 3, 1, 1)
    fg = mask > 0
    edge = (mx != mn).squeeze(1) & fg
    out = torch.zeros_like(mask, dtype=torch.long)
    out[fg] = 1
    out[edge] = 2
    return out


def soft_dice_loss(prob: torch.Tensor, onehot: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 − mean soft Dice over channels (``B×C×H×W`` probabilities and one-hot targets)."""
    dims = (0, 2, 3)
    inter = (prob * onehot).sum(dims)
    denom = prob.sum(dims) + onehot.sum(dims)
    return 1 - ((2 * inter + eps) / (denom + eps)).mean()


def foreground_prob(logits: torch.Tensor) -> torch.Tensor:
    """Per-pixel foreground probability ``B×H×W`` of a 1-channel (sigmoid) or C-channel (softmax) head."""
    p = probabilities(logits, "segmentation")
    return p[:, 0] if logits.shape[1] == 1 else 1 - p[:, 0]


class SegmentationTask(BaseTask):
    """U-Net style segmentation; logs ``val_dice`` (foreground, per image then averaged).

    Args:
        model: returns ``B×C×H×W`` logits (C = 1 for a sigmoid head, 2 or 3 for softmax).
        seg_target: ``binary`` (foreground) or ``three_class`` (needs a 3-channel head).
        dice_weight: loss = CE/BCE + ``dice_weight`` × soft Dice loss.
        class_weights: optional CE weights for C-channel heads.
        **base_kw: optimiser/scheduler settings of :class:`BaseTask`.
    """

    def __init__(self, model: nn.Module, *, seg_target: str = "binary", dice_weight: float = 1.0,
                 class_weights: list[float] | None = None, **base_kw: Any) -> None:
        base_kw.setdefault("monitor", "val_dice")
        super().__init__(model, **base_kw)
        self.seg_target = seg_target
        self.dice_weight = float(dice_weight)
        w = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("ce_weight", w, persistent=False)
        self._dice: list[torch.Tensor] = []
        self._iou: list[torch.Tensor] = []

    def target(self, mask: torch.Tensor, channels: int) -> torch.Tensor:
        """Integer class map for a ``channels``-output head."""
        mask = mask.long()
        if mask.ndim == 4:
            mask = mask[:, 0]
        if channels == 3 or self.seg_target == "three_class":
            return three_class_target(mask)
        return (mask > 0).long()

    def _step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, mask = batch[0], batch[1]
        logits = self.model(x)
        c = logits.shape[1]
        t = self.target(mask, c)
        prob = probabilities(logits, "segmentation")
        if c == 1:
            tf = t.float().unsqueeze(1)
            loss = F.binary_cross_entropy_with_logits(logits, tf)
            dice = soft_dice_loss(prob, tf)
        else:
            loss = F.cross_entropy(logits, t, weight=self.ce_weight)
            onehot = F.one_hot(t, c).permute(0, 3, 1, 2).float()
            dice = soft_dice_loss(prob[:, 1:], onehot[:, 1:])
        return loss + self.dice_weight * dice, logits, t

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, _, t = self._step(batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(t), sync_dist=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss, logits, t = self._step(batch)
        self.log("val_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(t), sync_dist=True)
        pred = foreground_prob(logits) >= 0.5
        gt = t > 0
        inter = (pred & gt).flatten(1).sum(1).float()
        ps, gs = pred.flatten(1).sum(1).float(), gt.flatten(1).sum(1).float()
        union = ps + gs - inter
        self._dice.append(torch.where(ps + gs > 0, 2 * inter / (ps + gs).clamp(min=1), torch.ones_like(inter)))
        self._iou.append(torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter)))

    def on_validation_epoch_end(self) -> None:
        if not self._dice:
            return
        d, j = torch.cat(self._dice), torch.cat(self._iou)
        self._dice.clear()
        self._iou.clear()
        self.log("val_dice", d.mean(), prog_bar=True, sync_dist=True)
        self.log("val_iou", j.mean(), sync_dist=True)
