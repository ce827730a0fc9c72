"""Lightning plumbing of a run: atomic checkpoints, RNG state in checkpoints, mid-epoch checkpoints
(with the epoch's running training metrics), sharding record, and the segmentation progress GIF."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from medattn.io import atomic_path, atomic_write_json, ensure_dir

__all__ = ["AtomicCheckpointIO", "RNGStateCallback", "LastCheckpoint", "PartialEpochMetrics", "SeenItemsCallback",
           "SegProgressGIF"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a temporary file in the same folder, fsync, then rename: a run killed
    at any moment leaves either the previous checkpoint or the new one, never a torn file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                torch.save(checkpoint, fh)
                fh.flush()
                os.fsync(fh.fileno())


class RNGStateCallback(L.Callback):
    """Store the torch/numpy/python RNG states in every checkpoint and restore them on resume,
    so dropout (and anything else drawing from the global generators) continues exactly as in an
    uninterrupted run.

    The states are put back in ``on_train_start``, after Lightning has rebuilt the data loaders
    and fetcher, right before the first training step: whatever happens between loading the
    checkpoint and training (iterator creation, validation-loader setup) then cannot shift them.
    Under DDP the checkpoint holds rank 0's states and every rank restores them; ranks seeded
    alike by ``seed_everything`` and running the same ops have identical states, so that is exact.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        np_state = np.random.get_state()
        py = random.getstate()
        return {
            "torch": torch.get_rng_state(),
            "numpy": [str(np_state[0]), np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
            "python": [py[0], list(py[1]), py[2]],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        torch.set_rng_state(state["torch"])
        n = state["numpy"]
        np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
        p = state["python"]
        random.setstate((p[0], tuple(p[1]), p[2]))


class LastCheckpoint(Checkpoint):
    """``last.ckpt`` at the end of every training epoch and, with ``every_n_steps``, every that
    many optimiser steps inside an epoch (never on an epoch's last batch: the epoch-end one
    follows, and one saved before the epoch's validation would make Lightning skip that
    validation and the epoch-end hooks on resume).

    Lightning's ``ModelCheckpoint(save_last=True)`` writes ``last.ckpt`` only when it also writes
    a top-k checkpoint, i.e. after improving epochs: a run killed after a non-improving epoch
    resumed from the best epoch and trained the later ones again. As a ``Checkpoint``, this runs
    after the other callbacks' epoch-end hooks (early stopping, best checkpoint), so their updated
    state is what it saves.
    """

    def __init__(self, path: str | Path, every_n_steps: int | None = None) -> None:
        self.path = Path(path)
        self.every_n_steps = every_n_steps
        self._last_step = -1
        self._state: dict[str, Any] = {}
        self._pending: dict[str, Any] | None = None

    def _save(self, trainer: L.Trainer, epoch_end: bool = False, stepped: bool = False) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run:
            return
        self._last_step = trainer.global_step
        self._state = {"epoch_end": epoch_end, "stepped": stepped, "metrics": {
            k: v.detach().cpu().clone() for k, v in trainer.callback_metrics.items()
            if isinstance(v, torch.Tensor) and v.numel() == 1} if epoch_end else {}}
        try:
            trainer.save_checkpoint(self.path)
        finally:
            self._state = {}

    def state_dict(self) -> dict[str, Any]:
        """Epoch-end flag, whether the LR schedulers' epoch step is already in the checkpoint, and
        the epoch's metrics (what a plateau scheduler needs to make that step on resume)."""
        return dict(self._state)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = dict(state_dict)

    def _step_schedulers(self, trainer: L.Trainer, pl_module: L.LightningModule,
                         metrics: dict[str, Any]) -> None:
        idx = trainer.current_epoch + 1
        for cfg in trainer.lr_scheduler_configs:
            if cfg.interval != "epoch" or cfg.frequency <= 0 or idx % cfg.frequency:
                continue
            value = metrics.get(cfg.monitor) if cfg.reduce_on_plateau else None
            if cfg.reduce_on_plateau and value is None:
                continue
            pl_module.lr_scheduler_step(cfg.scheduler, value)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Resumed from an epoch-end checkpoint: make the epoch-interval LR-scheduler step that
        followed it in the interrupted run (Lightning skips it when restarting there)."""
        pending = self._pending
        if pending is not None and pending.get("epoch_end"):
            self._pending = None
            if not pending.get("stepped"):
                self._step_schedulers(trainer, pl_module, pending.get("metrics", {}))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        n = self.every_n_steps
        step = trainer.global_step
        if not n or step % n or step == self._last_step or batch_idx + 1 >= trainer.num_training_batches:
            return
        self._save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Save; at the end of an epoch resumed mid-way first make the LR schedulers' epoch step,
        which Lightning skips for a restarted epoch (plateau, step and cosine schedules would
        otherwise lag one epoch behind the uninterrupted run)."""
        stepped = False
        pending, self._pending = self._pending, None
        if pending is not None and trainer.fit_loop.restarting:
            if not pending.get("stepped"):
                metrics = {**pending.get("metrics", {}), **trainer.callback_metrics}
                self._step_schedulers(trainer, pl_module, metrics)
            stepped = True
        self._save(trainer, epoch_end=True, stepped=stepped)


class PartialEpochMetrics(L.Callback):
    """Carry the running epoch aggregates of the training metrics (``self.log(..., on_epoch=True)``)
    through a mid-epoch checkpoint, so the resumed epoch's ``train_loss``/``train_acc`` average
    every batch of the epoch, not only those after the resume.

    Lightning keeps these sums in the training loop's result collection, which checkpoints do not
    hold. They are saved here and added back after the first batch of the resumed epoch:
    ``x + S`` equals the uninterrupted ``S + x`` bit for bit.
    """

    def __init__(self) -> None:
        self._trainer: L.Trainer | None = None
        self._pending: dict[str, Any] | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        tr = self._trainer
        if tr is None or not tr.training:
            return {}
        loop = tr.fit_loop.epoch_loop
        if loop.batch_progress.current.processed >= tr.num_training_batches:  # epoch-end checkpoint
            return {}
        out: dict[str, Any] = {}
        for key, m in loop._results.items():
            if not getattr(m, "is_tensor", False) or not m.meta.on_epoch:
                continue
            rec = {"value": m.value.detach().cpu().clone()}
            if m.meta.is_mean_reduction:
                rec["n"] = m.cumulated_batch_size.detach().cpu().clone()
            out[key] = rec
        return {"metrics": out}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict.get("metrics") or None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, None
        for key, rec in pending.items():
            m = trainer.fit_loop.epoch_loop._results.get(key)
            if m is None or not getattr(m, "is_tensor", False):
                continue
            saved = rec["value"].to(m.value)
            if m.meta.is_mean_reduction or m.meta.is_sum_reduction:
                m.value = m.value + saved
            elif m.meta.is_max_reduction:
                m.value = torch.maximum(m.value, saved)
            elif m.meta.is_min_reduction:
                m.value = torch.minimum(m.value, saved)
            if "n" in rec and m.meta.is_mean_reduction:
                m.cumulated_batch_size = m.cumulated_batch_size + rec["n"].to(m.cumulated_batch_size)
            m._computed = None


class SeenItemsCallback(L.Callback):
    """Write ``<dir>/rank<R>.json``: the dataset indices this rank trained on, per epoch."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        self.seen: dict[str, list[int]] = {}

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dl = trainer.train_dataloader
        sampler = getattr(dl, "sampler", None)
        if sampler is None:
            return
        idx = [int(i) for i in sampler.indices()] if hasattr(sampler, "indices") \
            else [int(k[1] if isinstance(k, tuple) else k) for k in iter(sampler)]
        limit = trainer.num_training_batches
        if isinstance(limit, int) and dl.batch_size:
            idx = idx[: limit * dl.batch_size]
        self.seen[str(trainer.current_epoch)] = idx
        atomic_write_json(self.out_dir / f"rank{trainer.global_rank}.json",
                          {"rank": trainer.global_rank, "world_size": trainer.world_size, "epochs": self.seen})


class SegProgressGIF(L.Callback):
    """Predict one fixed validation image after every ``every`` epochs; keep each frame as a PNG
    (image | ground truth | prediction) and rebuild ``progress.gif`` from all frames."""

    def __init__(self, image: torch.Tensor, mask: torch.Tensor, out_dir: str | Path,
                 mean: tuple[float, ...], std: tuple[float, ...], every: int = 1) -> None:
        self.image = image
        self.mask = mask
        self.out_dir = Path(out_dir)
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)
        self.every = max(1, every)

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or trainer.current_epoch % self.every:
            return
        from PIL import Image

        from medattn.engine.seg_task import foreground_prob

        was = pl_module.training
        pl_module.eval()
        logits = pl_module(self.image[None].to(pl_module.device))
        pl_module.train(was)
        prob = foreground_prob(logits, getattr(pl_module, "seg_target", "binary"))[0].float().cpu().numpy()
        rgb = (self.image[:3] * self.std[: self.image.shape[0]] + self.mean[: self.image.shape[0]]).clamp(0, 1)
        rgb = (rgb.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        if rgb.shape[2] == 1:
            rgb = np.repeat(rgb, 3, 2)
        gt = np.repeat(((self.mask.numpy() > 0) * 255).astype(np.uint8)[..., None], 3, 2)
        pr = np.repeat((prob * 255).astype(np.uint8)[..., None], 3, 2)
        frame = np.concatenate([rgb, gt, pr], axis=1)
        frames_dir = ensure_dir(self.out_dir / "progress_frames")
        with atomic_path(frames_dir / f"epoch_{trainer.current_epoch:04d}.png") as tmp:
            Image.fromarray(frame).save(tmp, format="PNG")
        self.write_gif()

    def write_gif(self) -> Path | None:
        """Assemble ``progress.gif`` from every saved frame (also the frames of before a resume)."""
        from PIL import Image

        files = sorted((self.out_dir / "progress_frames").glob("epoch_*.png"))
        if not files:
            return None
        frames = [Image.open(f).convert("RGB") for f in files]
        target = self.out_dir / "progress.gif"
        with atomic_path(target) as tmp:
            frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=500, loop=0)
        return target
