"""Legacy trainer, kept only until ``benchmarks/real/breast_idc.py`` trains through recipes.

Everything else trains through :func:`medattn.engine.runner.train_run` → ``engine/fit.py`` (the one
training loop). Delete this module once that script no longer imports :func:`fit_classifier`;
:func:`quiet_lightning` lives in :mod:`medattn.engine.lightning_quiet` and is re-exported here only
for old imports.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import (
    EarlyStopping,
    ModelCheckpoint,
    RichProgressBar,
    TQDMProgressBar,
)
from torch import nn
from torch.utils.data import DataLoader, Dataset

from medattn.engine.history import HistoryCSV
from medattn.engine.lightning_quiet import quiet_lightning
from medattn.engine.tasks import ClassificationTask
from medattn.io import ensure_dir
from medattn.runtime import tune_allocator

__all__ = ["FitConfig", "fit_classifier", "quiet_lightning"]


@dataclass
class FitConfig:
    """Training settings of :func:`fit_classifier`."""

    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 1e-4
    patience: int = 3
    monitor: str = "val_auroc"
    seed: int = 0
    num_workers: int = 0
    deterministic: bool = False
    progress: bool = True
    rich: bool = True
    accelerator: str = "auto"
    max_steps_per_epoch: int | None = None
    scheduler: str = "plateau"
    """``plateau`` (factor 0.3, patience 2 on the monitor), ``cosine`` (to lr/50 over ``epochs``),
    ``step``, ``onecycle`` or ``none``."""


def _loader(ds: Dataset, batch_size: int, shuffle: bool, num_workers: int, seed: int = 0) -> DataLoader:
    """DataLoader with a seeded generator and persistent workers when workers are used."""
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(
        ds, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, generator=g,
        persistent_workers=num_workers > 0, drop_last=False,
    )


def fit_classifier(
    model: nn.Module, train_ds: Dataset, val_ds: Dataset, out_dir: str | Path, cfg: FitConfig | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train ``model`` and return a *copy* of the weights with the best validation metric.

    Writes ``training_history.csv`` and ``checkpoints/best.ckpt`` under ``out_dir``.
    """
    cfg = cfg or FitConfig()
    out = ensure_dir(out_dir)
    quiet_lightning()
    tune_allocator()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    sched_kw = {"min_lr": cfg.lr / 50} if cfg.scheduler == "cosine" else None
    task = ClassificationTask(model, optimizer=cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay,
                              scheduler=cfg.scheduler, scheduler_kwargs=sched_kw)
    ckpt = ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor=cfg.monitor, mode="max",
                           save_top_k=1, save_last=False, enable_version_counter=False)
    history = HistoryCSV(out / "training_history.csv")
    callbacks: list[L.Callback] = [ckpt, history, EarlyStopping(cfg.monitor, mode="max", patience=cfg.patience)]
    if cfg.progress:
        callbacks.append(RichProgressBar(leave=False) if cfg.rich else TQDMProgressBar())
    trainer = L.Trainer(
        max_epochs=cfg.epochs, accelerator=cfg.accelerator, devices=1, logger=False,
        callbacks=callbacks, enable_progress_bar=cfg.progress, enable_model_summary=False,
        deterministic=cfg.deterministic, default_root_dir=str(out), num_sanity_val_steps=0,
        limit_train_batches=cfg.max_steps_per_epoch or 1.0,
    )
    train_dl = _loader(train_ds, cfg.batch_size, True, cfg.num_workers, cfg.seed)
    val_dl = _loader(val_ds, cfg.batch_size * 2, False, cfg.num_workers, cfg.seed)
    trainer.fit(task, train_dl, val_dl)
    best = copy.deepcopy(model)
    if ckpt.best_model_path:
        state = torch.load(ckpt.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
        best.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    best.eval()
    info = {
        "best_score": float(ckpt.best_model_score) if ckpt.best_model_score is not None else None,
        "epochs_run": trainer.current_epoch,
        "monitor": cfg.monitor,
        "history": history.rows,
    }
    return best, info
