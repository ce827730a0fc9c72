"""Lightning modules: the training step lives here, the model in :mod:`medattn.models`.

:class:`ClassificationTask` covers binary (one logit), multiclass (softmax) and multilabel
(one sigmoid per label) problems; segmentation and AG-CNN live in :mod:`medattn.engine.seg_task`
and :mod:`medattn.engine.agcnn_task` and share :class:`BaseTask`.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics.functional.classification import (
    binary_auroc,
    multiclass_accuracy,
    multiclass_auroc,
    multiclass_f1_score,
)

from medattn.engine.optim import build_optimizer, build_scheduler

__all__ = ["BaseTask", "ClassificationTask", "build_optimizer", "multilabel_mean_auroc"]


class BaseTask(L.LightningModule):
    """Optimiser/scheduler plumbing shared by every task.

    Args:
        model: the network (its weights are saved under the ``model.`` prefix).
        optimizer: ``adam``, ``adamw``, ``nadam`` or ``sgd``; ``lr``, ``weight_decay``, ``momentum``.
        scheduler: ``none``, ``plateau``, ``step``, ``cosine`` or ``onecycle``.
        scheduler_kwargs: ``factor``, ``patience``, ``step_size``, ``min_lr``, ``warmup_fraction``.
        monitor, mode: validation metric watched by the plateau scheduler.
    """

    def __init__(self, model: nn.Module, *, optimizer: str = "adam", lr: float = 1e-3,
                 weight_decay: float = 0.0, momentum: float = 0.9, scheduler: str | None = "plateau",
                 scheduler_kwargs: dict[str, Any] | None = None, monitor: str = "val_auroc",
                 mode: str = "max") -> None:
        super().__init__()
        self.model = model
        self.optimizer_name = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.momentum = momentum
        self.scheduler_name = scheduler or "none"
        self.scheduler_kwargs = dict(scheduler_kwargs or {"factor": 0.3, "patience": 2})
        self.monitor = monitor
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimiser updates (AG-CNN stages freeze some)."""
        return [p for p in self.parameters() if p.requires_grad]

    def configure_optimizers(self) -> Any:
        opt = build_optimizer(self.trainable_parameters(), self.optimizer_name, self.lr, self.weight_decay,
                              self.momentum)
        total = None
        if self.scheduler_name == "onecycle" and self._trainer is not None:
            total = int(self.trainer.estimated_stepping_batches)
        max_epochs = self.trainer.max_epochs if self._trainer is not None else 1
        sched = build_scheduler(opt, self.scheduler_name, monitor=self.monitor, mode=self.mode,
                                max_epochs=max_epochs or 1, total_steps=total, **self.scheduler_kwargs)
        return opt if sched is None else {"optimizer": opt, "lr_scheduler": sched}


def multilabel_mean_auroc(prob: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
    """Mean AUROC over labels that have both classes in ``y`` (and the per-label values, NaN if not)."""
    per: list[float] = []
    for k in range(y.shape[1]):
        yk = y[:, k].long()
        ok = 0 < int(yk.sum()) < len(yk)
        per.append(float(binary_auroc(prob[:, k], yk)) if ok else float("nan"))
    vals = [v for v in per if v == v]
    return torch.tensor(sum(vals) / len(vals) if vals else 0.5), per


class ClassificationTask(BaseTask):
    """Binary (one logit), multiclass or multilabel classification; logs ``val_auroc``.

    Args:
        model: a registry classifier returning ``B×1`` (binary) or ``B×K`` logits.
        optimizer, lr, weight_decay, scheduler: see :class:`BaseTask`.
        pos_weight: binary: weight of positives in the BCE loss.
        kind: ``binary``, ``multiclass`` or ``multilabel``.
        class_weights: multiclass: CE weights; multilabel: per-label BCE ``pos_weight``.
        label_smoothing: CE label smoothing; for sigmoid outputs targets move towards 0.5.
        focal_gamma: binary/multiclass: scale each item's loss by ``(1 − p_true)^γ`` (0 = off).
        mix, mix_alpha, mix_prob: binary/multiclass training batches mixed by MixUp/CutMix
            (``none``, ``mixup``, ``cutmix``, ``mixup_or_cutmix``), Beta(α, α), share of batches.
        num_classes: multiclass: the number of classes (needed to mix labels).
    """

    def __init__(self, model: nn.Module, optimizer: str = "adam", lr: float = 1e-3,
                 weight_decay: float = 0.0, pos_weight: float | None = None,
                 scheduler: str | None = "plateau", *, kind: str = "binary",
                 class_weights: list[float] | None = None, label_smoothing: float = 0.0,
                 focal_gamma: float = 0.0, mix: str = "none", mix_alpha: float = 1.0, mix_prob: float = 1.0,
                 num_classes: int | None = None, **base_kw: Any) -> None:
        super().__init__(model, optimizer=optimizer, lr=lr, weight_decay=weight_decay, scheduler=scheduler,
                         **base_kw)
        if kind not in ("binary", "multiclass", "multilabel"):
            raise ValueError(f"kind must be binary, multiclass or multilabel, got '{kind}'")
        self.task_mode = kind
        self.label_smoothing = float(label_smoothing)
        if kind == "binary":
            pw = torch.tensor([float(pos_weight)]) if pos_weight else None
            self.loss_fn: nn.Module = nn.BCEWithLogitsLoss(pos_weight=pw)
        elif kind == "multiclass":
            w = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
            self.loss_fn = nn.CrossEntropyLoss(weight=w, label_smoothing=self.label_smoothing)
        else:
            pw = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
            self.loss_fn = nn.BCEWithLogitsLoss(pos_weight=pw)
        self.focal_gamma = float(focal_gamma)
        if (self.focal_gamma or mix != "none") and kind == "multilabel":
            raise ValueError("focal_gamma and mix are for binary and multiclass tasks")
        self.mixer = _batch_mixer(mix, 2 if kind == "binary" else num_classes, mix_alpha)
        self.mix_prob = float(mix_prob)
        self._val_out: list[torch.Tensor] = []
        self._val_y: list[torch.Tensor] = []

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Model logits, flattened to ``B`` for binary problems."""
        out = self.model(x)
        return out.reshape(-1) if self.task_mode == "binary" else out

    def _loss(self, logits: torch.Tensor, y: torch.Tensor, soft: torch.Tensor | None = None) -> torch.Tensor:
        """The loss against labels ``y``, or against mixed soft labels ``soft`` (``B×K``) when given."""
        if self.task_mode == "multiclass":
            target = soft if soft is not None else y.long()
            if self.focal_gamma:
                return focal_cross_entropy(logits, target, self.focal_gamma, self.loss_fn.weight,  # type: ignore[arg-type]
                                           self.label_smoothing)
            return self.loss_fn(logits, target)
        t = soft[:, 1] if soft is not None and self.task_mode == "binary" else y.float()
        if self.label_smoothing:
            t = t * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        if self.focal_gamma:
            return focal_bce(logits, t, self.focal_gamma, self.loss_fn.pos_weight)  # type: ignore[arg-type]
        return self.loss_fn(logits, t)

    def _step(self, batch: Any, mix: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch[0], batch[1]
        soft = None
        if mix and self.mixer is not None and (self.mix_prob >= 1 or float(torch.rand(())) < self.mix_prob):
            x, soft = self.mixer(x, y.long())
        logits = self.logits(x)
        return self._loss(logits, y, soft), logits, y

    def _probs(self, logits: torch.Tensor) -> torch.Tensor:
        from medattn.models.outputs import probabilities

        return probabilities(logits, "multiclass" if self.task_mode == "multiclass" else "multilabel")

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, logits, y = self._step(batch, mix=True)
        n = len(y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=n, sync_dist=True)
        if self.task_mode == "multiclass":
            acc = (logits.argmax(1) == y.long()).float().mean()
        else:
            acc = ((logits > 0).float() == y.float()).float().mean()
        self.log("train_acc", acc, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss, logits, y = self._step(batch)
        self.log("val_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True)
        self._val_out.append(self._probs(logits).detach())
        self._val_y.append(y.detach())

    def on_validation_epoch_end(self) -> None:
        if not self._val_out:
            return
        p = torch.cat(self._val_out)
        y = torch.cat(self._val_y)
        self._val_out.clear()
        self._val_y.clear()
        if self.trainer.world_size > 1:  # every rank scores the whole validation set
            p = self.all_gather(p).reshape(-1, *p.shape[1:])
            y = self.all_gather(y).reshape(-1, *y.shape[1:])
        p, y = p.cpu(), y.cpu()
        if self.task_mode == "binary":
            yl = y.long()
            auroc = binary_auroc(p, yl) if 0 < int(yl.sum()) < len(yl) else torch.tensor(0.5)
            self.log("val_auroc", auroc, prog_bar=True)
            self.log("val_acc", ((p >= 0.5).long() == yl).float().mean())
        elif self.task_mode == "multiclass":
            k = p.shape[1]
            yl = y.long()
            self.log("val_auroc", multiclass_auroc(p, yl, num_classes=k, average="macro"), prog_bar=True)
            self.log("val_acc", multiclass_accuracy(p, yl, num_classes=k, average="micro"))
            self.log("val_bal_acc", multiclass_accuracy(p, yl, num_classes=k, average="macro"))
            self.log("val_f1", multiclass_f1_score(p, yl, num_classes=k, average="macro"))
        else:
            mean, _ = multilabel_mean_auroc(p, y)
            self.log("val_auroc", mean, prog_bar=True)
            self.log("val_acc", ((p >= 0.5).float() == y.float()).float().mean())


def _batch_mixer(kind: str, num_classes: int | None, alpha: float) -> Any:
    """torchvision's MixUp / CutMix (or a random choice of the two) for ``kind``; None for ``none``."""
    if kind == "none":
        return None
    if not num_classes:
        raise ValueError("mix needs the number of classes")
    from torchvision.transforms import v2

    mixup, cutmix = v2.MixUp(alpha=alpha, num_classes=num_classes), v2.CutMix(alpha=alpha, num_classes=num_classes)
    return {"mixup": mixup, "cutmix": cutmix, "mixup_or_cutmix": v2.RandomChoice([mixup, cutmix])}[kind]


def focal_cross_entropy(logits: torch.Tensor, target: torch.Tensor, gamma: float, weight: torch.Tensor | None = None,
                        label_smoothing: float = 0.0) -> torch.Tensor:
    """Multiclass focal loss ``−Σ_c w_c q_c (1 − p_c)^γ log p_c`` for class indices or soft targets
    ``q``; averaged like ``nn.CrossEntropyLoss`` (over ``Σ w_y`` for indices, over items for soft
    targets), so ``γ = 0`` is exactly the cross-entropy."""
    k = logits.shape[1]
    logp = torch.log_softmax(logits.float(), dim=1)
    hard = target.ndim == 1
    q = nn.functional.one_hot(target.long(), k).float() if hard else target.float()
    if label_smoothing:
        q = q * (1 - label_smoothing) + label_smoothing / k
    w = weight.to(logp) if weight is not None else torch.ones(k, dtype=logp.dtype, device=logp.device)
    per = -((w * q * (1 - logp.exp()).pow(gamma) * logp).sum(1))
    if hard and weight is not None:
        return per.sum() / w[target.long()].sum()
    return per.mean()


def focal_bce(logits: torch.Tensor, target: torch.Tensor, gamma: float, pos_weight: torch.Tensor | None = None
              ) -> torch.Tensor:
    """Binary focal loss: the (``pos_weight``-weighted) BCE of each item scaled by ``(1 − p_t)^γ``,
    ``p_t`` the probability given to the target (soft targets allowed); ``γ = 0`` is the BCE."""
    bce = nn.functional.binary_cross_entropy_with_logits(logits.float(), target.float(), pos_weight=pos_weight,
                                                         reduction="none")
    p = torch.sigmoid(logits.float())
    p_t = p * target + (1 - p) * (1 - target)
    return ((1 - p_t).pow(gamma) * bce).mean()
