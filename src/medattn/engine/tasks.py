"""Lightning modules: the training step lives here, the model in :mod:`medattn.models`."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics.functional.classification import binary_auroc

__all__ = ["ClassificationTask", "build_optimizer"]


def build_optimizer(params: Any, name: str = "adam", lr: float = 1e-3, weight_decay: float = 0.0,
                    momentum: float = 0.9) -> torch.optim.Optimizer:
    """Adam, AdamW, NAdam or SGD by name."""
    name = name.lower()
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "nadam":
        return torch.optim.NAdam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True)
    raise ValueError(f"unknown optimizer '{name}'; use adam, adamw, nadam or sgd")


class ClassificationTask(L.LightningModule):
    """Binary (one logit) classification with validation AUROC.

    Args:
        model: any registry classifier returning ``B×1`` logits.
        optimizer: optimiser name; ``lr``, ``weight_decay`` its settings.
        pos_weight: optional positive-class weight for the BCE loss.
    """

    def __init__(self, model: nn.Module, optimizer: str = "adam", lr: float = 1e-3,
                 weight_decay: float = 0.0, pos_weight: float | None = None,
                 scheduler: str | None = "plateau") -> None:
        super().__init__()
        self.model = model
        self.optimizer_name = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.scheduler_name = scheduler
        pw = torch.tensor([pos_weight]) if pos_weight else None
        self.loss_fn = nn.BCEWithLogitsLoss(pos_weight=pw)
        self._val_probs: list[torch.Tensor] = []
        self._val_labels: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch[0], batch[1].float()
        logits = self.model(x).reshape(-1)
        return self.loss_fn(logits, y), logits, y

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, logits, y = self._step(batch)
        acc = ((logits > 0).float() == y).float().mean()
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log("train_acc", acc, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss, logits, y = self._step(batch)
        self.log("val_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        self._val_probs.append(torch.sigmoid(logits).detach().cpu())
        self._val_labels.append(y.detach().cpu())

    def on_validation_epoch_end(self) -> None:
        if not self._val_probs:
            return
        p = torch.cat(self._val_probs)
        y = torch.cat(self._val_labels).long()
        self._val_probs.clear()
        self._val_labels.clear()
        auroc = binary_auroc(p, y) if 0 < int(y.sum()) < len(y) else torch.tensor(0.5)
        self.log("val_auroc", auroc, prog_bar=True)
        self.log("val_acc", ((p >= 0.5).long() == y).float().mean())

    def configure_optimizers(self) -> Any:
        opt = build_optimizer(self.parameters(), self.optimizer_name, self.lr, self.weight_decay)
        if self.scheduler_name == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.3, patience=2)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val_auroc"}}
        return opt
