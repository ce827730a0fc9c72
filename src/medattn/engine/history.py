"""A Lightning callback that writes ``training_history.csv`` (one row per epoch) atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L

from medattn.io import atomic_write_text

__all__ = ["HistoryCSV", "save_history_png"]


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


def save_history_png(rows: list[dict[str, Any]], path: str | Path, monitor: str = "val_auroc",
                     title: str = "") -> Path:
    """Training curves: losses and the validation ``monitor`` per epoch (stages side by side)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medattn.io import atomic_path

    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    stages = list(dict.fromkeys(r.get("stage", "main") for r in rows))
    offset = 0
    for st in stages:
        rs = [r for r in rows if r.get("stage", "main") == st]
        ep = [offset + int(r["epoch"]) + 1 for r in rs]
        suffix = "" if len(stages) == 1 else f" ({st})"
        for key in ("train_loss", "val_loss"):
            axes[0].plot(ep, [r.get(key, float("nan")) for r in rs], marker="o", label=key + suffix)
        axes[1].plot(ep, [r.get(monitor, float("nan")) for r in rs], marker="o", label=st)
        offset = ep[-1] if ep else offset
    axes[0].set_xlabel("epoch")
    axes[0].legend(fontsize=7)
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel(f"validation {monitor.removeprefix('val_')}")
    if len(stages) > 1:
        axes[1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)
