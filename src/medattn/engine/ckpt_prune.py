"""Keep a run's checkpoints small: a finished AG-CNN stage drops its ``last.ckpt``.

A three-stage run used to keep ``best.ckpt`` and ``last.ckpt`` of every stage, each with the
optimiser state (a smoke run of ``cxr14-agcnn`` left 717 MB of checkpoints). A finished stage is
never resumed from ``last.ckpt``: ``--resume`` reloads its ``best.ckpt`` (the runner's
``DONE.json``), so only the stage in progress needs its ``last.ckpt``.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L

__all__ = ["DropLastWhenFinished"]


class DropLastWhenFinished(L.Callback):
    """Delete ``path`` when ``fit`` ends normally (not on interruption or error), on rank zero.

    Args:
        path: the stage's ``last.ckpt``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.interrupted or not trainer.is_global_zero:
            return
        self.path.unlink(missing_ok=True)
