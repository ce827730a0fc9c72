"""A Lightning callback that writes ``training_history.csv`` (one row per epoch) atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L

from medattn.io import atomic_write_text

__all__ = ["HistoryCSV"]


class HistoryCSV(L.Callback):
    """Append the epoch's logged metrics and rewrite ``path`` (temp file + rename)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []

    def state_dict(self) -> dict[str, Any]:
        """Rows so far, stored in checkpoints so a resumed run keeps its earlier epochs."""
        return {"rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [dict(r) for r in state_dict.get("rows", [])]

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        m = {k: float(v) for k, v in sorted(trainer.callback_metrics.items()) if v.numel() == 1}
        row = {"epoch": trainer.current_epoch, "lr": trainer.optimizers[0].param_groups[0]["lr"], **m}
        self.rows = [r for r in self.rows if r["epoch"] != row["epoch"]] + [row]
        if not trainer.is_global_zero:
            return
        keys: list[str] = []
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        lines = [",".join(keys)] + [",".join(str(r.get(k, "")) for k in keys) for r in self.rows]
        atomic_write_text(self.path, "\n".join(lines) + "\n")
