"""How training reports itself: a rich progress bar on a terminal, one plain line per epoch
elsewhere (SLURM logs, pipes, CI), and Lightning's CSV or TensorBoard logger when the recipe
asks for one (``trainer.progress``, ``trainer.logger``)."""

from __future__ import annotations

import importlib.util
import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import lightning as L

from medattn.errors import ConfigError

__all__ = ["EpochLines", "progress_callbacks", "build_logger", "LOGGERS", "stream_is_tty"]

LOGGERS = ("none", "csv", "tensorboard")


def stream_is_tty(stream: TextIO | None = None) -> bool:
    """True when ``stream`` (default stdout) is an interactive terminal."""
    stream = stream if stream is not None else sys.stdout
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def _fmt(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "-"
    return "nan" if math.isnan(v) else f"{v:.4f}"


class EpochLines(L.Callback):
    """Print one line per finished epoch, e.g.
    ``epoch 3/20  train_loss 0.4121  val_loss 0.3980  val_auroc 0.8712  12.3 s``.

    Written on rank zero only and flushed at once, so log files follow the run live.

    Args:
        monitor: the validation metric that picks checkpoints (printed after the losses).
        stream: where to write (default: stdout at the time of printing).
        prefix: put in front of each line, e.g. ``"[global] "`` for an AG-CNN stage.
    """

    def __init__(self, monitor: str, stream: TextIO | None = None, prefix: str = "") -> None:
        self.monitor = monitor
        self.stream = stream
        self.prefix = prefix
        self._start = time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def line(self, trainer: L.Trainer) -> str:
        """The line of the epoch that just finished."""
        m = trainer.callback_metrics
        keys = ["train_loss", "val_loss"] + ([self.monitor] if self.monitor not in ("train_loss", "val_loss") else [])
        shown = "  ".join(f"{k} {_fmt(m[k]) if k in m else '-'}" for k in keys)
        total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        secs = time.perf_counter() - self._start
        return f"{self.prefix}epoch {trainer.current_epoch + 1}/{total}  {shown}  {secs:.1f} s"

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        out = self.stream if self.stream is not None else sys.stdout
        print(self.line(trainer), file=out, flush=True)


def progress_callbacks(enabled: bool, monitor: str, *, tty: bool | None = None,
                       prefix: str = "") -> tuple[list[L.Callback], bool]:
    """``(callbacks, enable_progress_bar)`` for ``lightning.Trainer``.

    Args:
        enabled: ``trainer.progress`` of the recipe (``False``: silent).
        monitor: validation metric shown in the per-epoch line.
        tty: whether stdout is a terminal (default: detected).
        prefix: per-epoch line prefix.
    """
    if not enabled:
        return [], False
    if tty if tty is not None else stream_is_tty():
        from lightning.pytorch.callbacks import RichProgressBar

        return [RichProgressBar(leave=False)], True
    return [EpochLines(monitor, prefix=prefix)], False


def build_logger(kind: str, run_dir: Path, version: str = "") -> Any:
    """Lightning logger writing under ``run_dir/logs/<version>`` (``False`` for ``none``).

    Args:
        kind: ``none``, ``csv`` (``metrics.csv``) or ``tensorboard`` (event files).
        run_dir: the run directory.
        version: sub-folder, e.g. the AG-CNN stage; empty for single-stage runs.

    Raises:
        ConfigError: unknown kind, or ``tensorboard`` without the package installed.
    """
    if kind == "none":
        return False
    if kind == "csv":
        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(save_dir=str(run_dir), name="logs", version=version)
    if kind == "tensorboard":
        if importlib.util.find_spec("tensorboard") is None and importlib.util.find_spec("tensorboardX") is None:
            raise ConfigError("field 'trainer.logger': 'tensorboard' needs the tensorboard package "
                              "(pip install tensorboard), or use trainer.logger=csv")
        from lightning.pytorch.loggers import TensorBoardLogger

        return TensorBoardLogger(save_dir=str(run_dir), name="logs", version=version, default_hp_metric=False)
    raise ConfigError(f"field 'trainer.logger': '{kind}' is not one of {', '.join(LOGGERS)}")
