"""AG-CNN three-stage training (Guan et al. 2018) as one LightningModule per stage.

* ``global``: the global branch learns from the whole image;
* ``local``: the global branch is frozen, its attention crops the input, the local branch learns
  from the crops;
* ``fusion``: both branches are frozen, only the fusion head learns.

Each stage monitors the mean validation AUROC of *its own* logits; the runner keeps the best
weights of a stage before the next starts.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medattn.engine.tasks import BaseTask, multilabel_mean_auroc
from medattn.models.outputs import probabilities

__all__ = ["AGCNNTask", "AGCNN_STAGES", "agcnn_branches", "agcnn_outputs"]

AGCNN_STAGES = ("global", "local", "fusion")


def agcnn_branches(model: nn.Module) -> dict[str, nn.Module]:
    """The ``global``, ``local`` and ``fusion`` submodules of an AG-CNN (found by name)."""
    found: dict[str, nn.Module] = {}
    for name, child in model.named_children():
        for stage in AGCNN_STAGES:
            if stage in name.lower() and stage not in found:
                found[stage] = child
    missing = [s for s in AGCNN_STAGES if s not in found]
    if missing:
        from medattn.errors import ModelError

        raise ModelError(f"{type(model).__name__} has no {', '.join(missing)} branch; AG-CNN training needs "
                         f"submodules named like global_branch, local_branch, fusion (found {list(dict(model.named_children()))})")
    return found


def agcnn_outputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{"global", "local", "fusion"}`` logits (and ``boxes``) of ``model.forward_all(x)``."""
    out = model.forward_all(x)  # type: ignore[operator]
    if isinstance(out, dict):
        return out
    names = ("global", "local", "fusion", "boxes")
    return dict(zip(names, out, strict=False))


class AGCNNTask(BaseTask):
    """One AG-CNN stage: multilabel BCE on the stage's logits, ``val_auroc`` = mean label AUROC.

    Args:
        model: an AG-CNN from the registry (``forward_all`` → global, local, fusion logits, boxes).
        stage: ``global``, ``local`` or ``fusion``.
        class_weights: per-label BCE ``pos_weight``.
        label_smoothing: targets move towards 0.5 by this amount.
        **base_kw: optimiser/scheduler settings of :class:`BaseTask`.
    """

    def __init__(self, model: nn.Module, *, stage: str = "global", class_weights: list[float] | None = None,
                 label_smoothing: float = 0.0, **base_kw: Any) -> None:
        super().__init__(model, **base_kw)
        if stage not in AGCNN_STAGES:
            raise ValueError(f"stage must be one of {AGCNN_STAGES}, got '{stage}'")
        self.stage = stage
        self.label_smoothing = float(label_smoothing)
        pw = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.loss_fn = nn.BCEWithLogitsLoss(pos_weight=pw)
        self.branches = agcnn_branches(model)
        if hasattr(model, "set_stage"):
            model.set_stage(stage)  # type: ignore[operator]
        else:
            for name, branch in self.branches.items():
                branch.requires_grad_(name == stage)
        self._val_p: list[torch.Tensor] = []
        self._val_y: list[torch.Tensor] = []

    def on_train_epoch_start(self) -> None:
        for name, branch in self.branches.items():  # frozen branches keep their BatchNorm statistics
            if name != self.stage:
                branch.eval()

    def stage_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of this stage's head."""
        return agcnn_outputs(self.model, x)[self.stage]

    def _step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch[0], batch[1].float()
        logits = self.stage_logits(x)
        t = y * (1 - self.label_smoothing) + 0.5 * self.label_smoothing if self.label_smoothing else y
        return self.loss_fn(logits, t), logits, y

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, _, y = self._step(batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss, logits, y = self._step(batch)
        self.log("val_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True)
        self._val_p.append(probabilities(logits, "multilabel").detach())
        self._val_y.append(y.detach())

    def on_validation_epoch_end(self) -> None:
        if not self._val_p:
            return
        p, y = torch.cat(self._val_p), torch.cat(self._val_y)
        self._val_p.clear()
        self._val_y.clear()
        if self.trainer.world_size > 1:
            p = self.all_gather(p).reshape(-1, p.shape[1])
            y = self.all_gather(y).reshape(-1, y.shape[1])
        mean, _ = multilabel_mean_auroc(p.cpu(), y.cpu())
        self.log("val_auroc", mean, prog_bar=True)
