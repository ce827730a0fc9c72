"""Build the model, the Lightning task and the Trainer of a recipe, and fit one stage.

The best weights by the validation monitor are *copied* out of ``best.ckpt`` into a fresh model
(never a reference to the live, still-training module).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from torch import nn

from medattn.engine.callbacks import (
    AtomicCheckpointIO,
    LastCheckpoint,
    PartialEpochMetrics,
    RNGStateCallback,
    SeenItemsCallback,
)
from medattn.engine.config import Recipe
from medattn.engine.datamodule import RunData, make_eval_loader, make_train_loader
from medattn.engine.history import HistoryCSV
from medattn.engine.progress import build_logger, progress_callbacks
from medattn.errors import ConfigError

__all__ = ["build_model", "build_task", "build_trainer", "fit_stage", "StageResult", "balanced_weights",
           "num_outputs", "is_distributed"]


def num_outputs(recipe: Recipe, class_names: list[str]) -> int:
    """Model outputs: 1 for binary, K classes/labels, 1 or 3 segmentation channels (3 for a
    three_class or hover head)."""
    t = recipe.task.type
    if t == "binary":
        return 1
    if t == "segmentation":
        return 3 if recipe.task.seg_target in ("three_class", "hover") else 1
    if not class_names:
        raise ConfigError(f"field 'data.class_names': the {t} task needs class names and the data gave none")
    return len(class_names)


def build_model(recipe: Recipe, class_names: list[str]) -> nn.Module:
    """``create_model(model.name, num_classes=…, in_chans=…, **model.args)`` (+ pretrained weights)."""
    from medattn.models import create_model
    from medattn.models.weights import load_pretrained

    args = dict(recipe.model.args)
    args.setdefault("num_classes", num_outputs(recipe, class_names))
    if recipe.task.type == "segmentation" and recipe.model.name == "unet":
        head = {"three_class": "3class", "hover": "hover"}.get(recipe.task.seg_target)
        if head:
            args.setdefault("head", head)
    model = create_model(recipe.model.name, **args)
    if recipe.model.pretrained:
        load_pretrained(model, recipe.model.pretrained)
    return model


def balanced_weights(labels: np.ndarray, kind: str, k: int) -> list[float] | float:
    """Inverse-frequency weights from the training labels.

    ``binary``: negatives/positives; ``multiclass``: n/(k·count) per class; ``multilabel``:
    negatives/positives per label (BCE ``pos_weight``).
    """
    y = np.asarray(labels)
    if kind == "binary":
        pos = float((y == 1).sum())
        return float((len(y) - pos) / max(pos, 1.0))
    if kind == "multiclass":
        counts = np.bincount(y.astype(int), minlength=k).astype(float)
        return (len(y) / (k * np.maximum(counts, 1.0))).tolist()
    pos = y.sum(0).astype(float)
    return ((len(y) - pos) / np.maximum(pos, 1.0)).tolist()


def build_task(recipe: Recipe, model: nn.Module, data: RunData, stage: str | None = None) -> L.LightningModule:
    """The LightningModule of ``recipe.task.type`` with the recipe's optimiser and scheduler."""
    o, s, loss, t = recipe.optimizer, recipe.scheduler, recipe.loss, recipe.task.type
    base = {
        "optimizer": o.name, "lr": o.lr, "weight_decay": o.weight_decay, "momentum": o.momentum,
        "scheduler": s.name, "monitor": recipe.default_monitor(), "mode": recipe.trainer.mode,
        "scheduler_kwargs": {"factor": s.factor, "patience": s.patience, "step_size": s.step_size,
                             "min_lr": s.min_lr, "warmup_fraction": s.warmup_fraction},
    }
    k = len(data.class_names)
    cw = loss.class_weights
    if cw == "balanced":
        cw = balanced_weights(data.train.labels(), "multilabel" if t == "agcnn" else t, k)  # type: ignore[attr-defined]
    if isinstance(cw, list) and t in ("multiclass", "multilabel", "agcnn") and len(cw) != k:
        raise ConfigError(f"field 'loss.class_weights': {len(cw)} weights for {k} classes {data.class_names}")
    if t == "segmentation":
        from medattn.engine.seg_task import SegmentationTask

        return SegmentationTask(model, seg_target=recipe.task.seg_target, dice_weight=loss.dice_weight,
                                class_weights=cw if isinstance(cw, list) else None, hv_weight=loss.hv_weight,
                                hv_grad_weight=loss.hv_grad_weight, **base)
    if t == "agcnn":
        from medattn.engine.agcnn_task import AGCNNTask

        return AGCNNTask(model, stage=stage or "global", class_weights=cw if isinstance(cw, list) else None,
                         label_smoothing=loss.label_smoothing, **base)
    from medattn.engine.tasks import ClassificationTask

    pw = loss.pos_weight
    if pw == "balanced":
        pw = balanced_weights(data.train.labels(), "binary", 2)  # type: ignore[attr-defined]
    return ClassificationTask(model, pos_weight=pw if t == "binary" else None, kind=t,  # type: ignore[arg-type]
                              class_weights=cw if isinstance(cw, list) else None,
                              label_smoothing=loss.label_smoothing, focal_gamma=loss.focal_gamma,
                              mix=loss.mix, mix_alpha=loss.mix_alpha, mix_prob=loss.mix_prob, num_classes=k, **base)


def is_distributed(recipe: Recipe) -> bool:
    """True when the recipe asks Lightning for more than one process."""
    t = recipe.trainer
    many = (isinstance(t.devices, int) and t.devices > 1) or (isinstance(t.devices, str) and t.devices not in ("1", "auto")) \
        or t.num_nodes > 1
    return many or t.strategy.startswith("ddp")


def resolve_precision(p: str, accelerator: str = "auto") -> str:
    """The Lightning precision a recipe's ``trainer.precision`` means on this machine."""
    from medattn.runtime import cpu_has_native_bf16

    cuda = torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")
    if p in ("auto", "fast") and cuda:
        return "16-mixed"
    if p == "fast":
        return "bf16-mixed" if accelerator in ("auto", "cpu") and cpu_has_native_bf16() else "32-true"
    if p == "auto":
        return "32-true"
    return "32-true" if p == "32" else p


def build_trainer(recipe: Recipe, ckpt_dir: Path, callbacks: list[L.Callback], *, max_epochs: int | None = None,
                  root_dir: Path | None = None) -> tuple[L.Trainer, ModelCheckpoint]:
    """A Trainer with best + last checkpoints (atomic), early stopping, RNG state and the recipe's
    devices/nodes/strategy passed straight to Lightning."""
    t = recipe.trainer
    monitor = recipe.default_monitor()
    ckpt = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor=monitor, mode=t.mode, save_top_k=1,
                           enable_version_counter=False, save_on_train_epoch_end=True,
                           save_weights_only=True)  # best.ckpt only gives weights; resume uses last.ckpt
    # last.ckpt (what --resume continues from) after every epoch, and every n steps when asked
    cbs: list[L.Callback] = [*callbacks, RNGStateCallback(), PartialEpochMetrics(), ckpt,
                             LastCheckpoint(ckpt_dir / "last.ckpt", t.checkpoint_every_n_steps)]
    if t.early_stopping.enabled:
        cbs.append(EarlyStopping(monitor, mode=t.mode, patience=t.early_stopping.patience,
                                 min_delta=t.early_stopping.min_delta, check_on_train_epoch_end=True))
    stage = ckpt_dir.name.removeprefix("stage_") if ckpt_dir.name.startswith("stage_") else ""
    if stage:  # a finished AG-CNN stage resumes from best.ckpt; its last.ckpt is dead weight
        from medattn.engine.ckpt_prune import DropLastWhenFinished

        cbs.append(DropLastWhenFinished(ckpt_dir / "last.ckpt"))
    shown, bar = progress_callbacks(t.progress, monitor, prefix=f"[{stage}] " if stage else "")
    cbs += shown  # rich bar on a terminal, one line per epoch otherwise
    trainer = L.Trainer(
        max_epochs=max_epochs or t.max_epochs, accelerator=t.accelerator, devices=t.devices,
        num_nodes=t.num_nodes, strategy=t.strategy, precision=resolve_precision(t.precision, t.accelerator),  # type: ignore[arg-type]
        deterministic=t.deterministic, logger=build_logger(t.logger, root_dir or ckpt_dir, stage),
        callbacks=cbs, enable_progress_bar=bar,
        enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=str(root_dir or ckpt_dir),
        limit_train_batches=t.limit_train_batches, limit_val_batches=t.limit_val_batches,
        accumulate_grad_batches=t.accumulate_grad_batches, gradient_clip_val=t.gradient_clip_val,
        plugins=[AtomicCheckpointIO()],
    )
    return trainer, ckpt


@dataclass
class StageResult:
    """Outcome of one ``trainer.fit``."""

    model: nn.Module
    best_score: float | None
    epochs_run: int
    history: list[dict[str, Any]]
    is_global_zero: bool
    best_path: str


def load_best_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """A deep copy of ``model`` holding the ``model.*`` tensors of a Lightning checkpoint."""
    best = copy.deepcopy(model).cpu()
    state = torch.load(str(path), map_location="cpu", weights_only=True)["state_dict"]
    best.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    return best.eval()


def warmup_ema(decay: float) -> Any:
    """EMA update ``avg ← d·avg + (1−d)·current`` with ``d = min(decay, (1+n)/(10+n))`` after ``n``
    updates: the average forgets the random initial weights within a few steps even when a short
    schedule takes fewer steps than ``1/(1−decay)`` (a plain EMA would still hold ``decay**steps``
    of the initialisation)."""

    def avg_fn(averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        n = float(num_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        return averaged * d + current * (1.0 - d)

    return avg_fn


def fit_stage(recipe: Recipe, task: L.LightningModule, data: RunData, run_dir: Path, ckpt_dir: Path, *,
              extra_callbacks: list[L.Callback] | None = None, resume: bool = False,
              max_epochs: int | None = None, history_name: str = "training_history.csv") -> StageResult:
    """Fit ``task`` (resuming from ``ckpt_dir/last.ckpt`` when asked and present) and return
    a copy of the best weights."""
    t = recipe.trainer
    history = HistoryCSV(run_dir / history_name)
    cbs: list[L.Callback] = [history, *(extra_callbacks or [])]
    if t.record_seen:
        cbs.append(SeenItemsCallback(run_dir / "seen"))
    if t.ema_decay is not None:
        from lightning.pytorch.callbacks import WeightAveraging

        cbs.append(WeightAveraging(use_buffers=True, avg_fn=warmup_ema(t.ema_decay)))
    trainer, ckpt = build_trainer(recipe, ckpt_dir, cbs, max_epochs=max_epochs, root_dir=run_dir)
    eval_bs = t.batch_size * 2 if recipe.task.type != "segmentation" else 1
    train_dl = make_train_loader(data.train, t.batch_size, recipe.data.num_workers, t.seed, is_distributed(recipe),
                                 balanced=recipe.data.sampler == "balanced")
    val_dl = make_eval_loader(data.valid, eval_bs, recipe.data.num_workers)
    last = ckpt_dir / "last.ckpt"
    if t.channels_last:  # convolutions pick NHWC when their weights are: no change to the inputs needed
        task.model.to(memory_format=torch.channels_last)  # type: ignore[attr-defined]
    trainer.fit(task, train_dl, val_dl, ckpt_path=str(last) if resume and last.is_file() else None,
                weights_only=True)
    best_path = ckpt.best_model_path or (str(last) if last.is_file() else "")
    model = task.model.to(memory_format=torch.contiguous_format)  # type: ignore[attr-defined]
    best = load_best_weights(model, best_path) if best_path and trainer.is_global_zero else copy.deepcopy(model).cpu().eval()
    score = float(ckpt.best_model_score) if ckpt.best_model_score is not None else None
    return StageResult(best, score, trainer.current_epoch, history.rows, trainer.is_global_zero, best_path)
