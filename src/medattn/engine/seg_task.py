"""Semantic segmentation: CE/BCE + soft Dice loss, validation Dice and IoU.

Targets come as ``B×H×W`` integer masks (0 = background; instance labels are fine), built per
batch after augmentation. With ``seg_target="three_class"`` the target becomes background /
interior / boundary; with ``seg_target="hover"`` (HoVer-Net, Graham et al. 2019) it becomes the
nuclear-pixel map and the horizontal/vertical distance of every nuclear pixel to its nucleus's
centroid (:func:`hover_target`): both heads separate touching nuclei for instance segmentation.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medattn.engine.tasks import BaseTask
from medattn.models.outputs import probabilities

__all__ = ["SegmentationTask", "three_class_target", "hover_target", "hv_gradients", "soft_dice_loss",
           "foreground_prob"]


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


def hover_target(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nuclear-pixel map and horizontal/vertical distance maps of a ``B×H×W`` instance label mask.

    Each foreground pixel's offset from its instance's centroid (columns → horizontal, rows →
    vertical) is divided by the largest offset of that instance on the same side, so each map
    spans [-1, 1] within every nucleus (-1 at its left/top extreme, +1 at its right/bottom one)
    and is 0 on background. Vectorised over instances (``scatter_add`` / ``scatter_reduce`` on the
    instance ids, made unique per image).

    Returns:
        ``(fg, hv)``: ``B×H×W`` float 0/1 and ``B×2×H×W`` float (horizontal, vertical).
    """
    if mask.ndim != 3:
        raise ValueError(f"hover_target takes a B×H×W label mask, got shape {tuple(mask.shape)}")
    b, h, w = mask.shape
    lab = mask.long()
    fg = lab > 0
    n = int(lab.max()) + 1 if lab.numel() else 1
    offset = torch.arange(b, device=lab.device).view(b, 1, 1) * n
    ids = torch.where(fg, lab + offset, torch.zeros_like(lab)).flatten()
    yy, xx = torch.meshgrid(torch.arange(h, device=lab.device, dtype=torch.float32),
                            torch.arange(w, device=lab.device, dtype=torch.float32), indexing="ij")
    yy, xx = yy.expand(b, h, w).flatten(), xx.expand(b, h, w).flatten()
    zeros = torch.zeros(b * n, device=lab.device, dtype=torch.float32)
    count = zeros.scatter_add(0, ids, torch.ones_like(xx)).clamp(min=1)
    maps = []
    for coord in (xx, yy):
        d = coord - (zeros.scatter_add(0, ids, coord) / count)[ids]
        pos = zeros.scatter_reduce(0, ids, d.clamp(min=0), reduce="amax")
        neg = zeros.scatter_reduce(0, ids, (-d).clamp(min=0), reduce="amax")
        scale = torch.where(d > 0, pos[ids], neg[ids]).clamp(min=1e-6)
        maps.append(torch.where(fg.flatten(), d / scale, torch.zeros_like(d)).view(b, h, w))
    return fg.float(), torch.stack(maps, 1)


_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0


def hv_gradients(hv: torch.Tensor) -> torch.Tensor:
    """Sobel derivative of the horizontal map along columns and of the vertical map along rows
    (``B×2×H×W`` → ``B×2×H×W``, in map units per pixel)."""
    k = torch.stack([_SOBEL, _SOBEL.T])[:, None].to(hv)
    return F.conv2d(F.pad(hv, (1, 1, 1, 1), mode="replicate"), k, groups=2)


def soft_dice_loss(prob: torch.Tensor, onehot: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 − mean soft Dice over channels (``B×C×H×W`` probabilities and one-hot targets)."""
    dims = (0, 2, 3)
    inter = (prob * onehot).sum(dims)
    denom = prob.sum(dims) + onehot.sum(dims)
    return 1 - ((2 * inter + eps) / (denom + eps)).mean()


def foreground_prob(logits: torch.Tensor, seg_target: str = "binary") -> torch.Tensor:
    """Per-pixel foreground probability ``B×H×W`` of a 1-channel (sigmoid), C-channel (softmax) or
    hover head (its nuclear-pixel channel)."""
    p = probabilities(logits, "segmentation", seg_target)
    return p[:, 0] if p.shape[1] == 1 else 1 - p[:, 0]


class SegmentationTask(BaseTask):
    """U-Net style segmentation; logs ``val_dice`` (foreground, per image then averaged).

    Args:
        model: returns ``B×C×H×W`` logits (C = 1 for a sigmoid head, 2 or 3 for softmax, 3 for hover).
        seg_target: ``binary`` (foreground), ``three_class`` (needs a 3-channel head) or ``hover``
            (3 channels: nuclear-pixel logit, horizontal and vertical maps).
        dice_weight: loss = CE/BCE + ``dice_weight`` × soft Dice loss (hover: on the nuclear pixels).
        class_weights: optional CE weights for C-channel heads.
        hv_weight: hover: weight of the MSE of the horizontal/vertical maps.
        hv_grad_weight: hover: weight of the MSE of their Sobel derivatives on nuclear pixels.
        **base_kw: optimiser/scheduler settings of :class:`BaseTask`.
    """

    def __init__(self, model: nn.Module, *, seg_target: str = "binary", dice_weight: float = 1.0,
                 class_weights: list[float] | None = None, hv_weight: float = 1.0, hv_grad_weight: float = 2.0,
                 **base_kw: Any) -> None:
        base_kw.setdefault("monitor", "val_dice")
        super().__init__(model, **base_kw)
        self.seg_target = seg_target
        self.dice_weight = float(dice_weight)
        self.hv_weight, self.hv_grad_weight = float(hv_weight), float(hv_grad_weight)
        w = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("ce_weight", w, persistent=False)
        self._dice: list[torch.Tensor] = []
        self._iou: list[torch.Tensor] = []

    def target(self, mask: torch.Tensor, channels: int) -> torch.Tensor:
        """Integer class map for a ``channels``-output head (hover: the nuclear-pixel map)."""
        mask = mask.long()
        if mask.ndim == 4:
            mask = mask[:, 0]
        if self.seg_target == "three_class" or (channels == 3 and self.seg_target != "hover"):
            return three_class_target(mask)
        return (mask > 0).long()

    def _hover_loss(self, logits: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """HoVer-Net's loss: BCE + soft Dice on the nuclear pixels, MSE of the distance maps and MSE
        of their Sobel derivatives on nuclear pixels; returns ``(loss, nuclear-pixel target)``."""
        if mask.ndim == 4:
            mask = mask[:, 0]
        fg, hv = hover_target(mask)
        prob = probabilities(logits, "segmentation", "hover")
        loss = F.binary_cross_entropy_with_logits(logits[:, 0], fg)
        loss = loss + self.dice_weight * soft_dice_loss(prob[:, 1:2], fg[:, None])
        pred_hv = prob[:, 2:]
        loss = loss + self.hv_weight * F.mse_loss(pred_hv, hv)
        if self.hv_grad_weight:
            err = (hv_gradients(pred_hv) - hv_gradients(hv)) ** 2
            loss = loss + self.hv_grad_weight * (err * fg[:, None]).sum() / (2 * fg.sum()).clamp(min=1)
        return loss, fg.long()

    def _step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, mask = batch[0], batch[1]
        logits = self.model(x)
        if self.seg_target == "hover":
            loss, t = self._hover_loss(logits, mask.long())
            return loss, logits, t
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
        pred = foreground_prob(logits, self.seg_target) >= 0.5
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
