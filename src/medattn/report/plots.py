"""PNG figures of a run (matplotlib, Agg backend, written atomically)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from medattn.io import atomic_path  # noqa: E402

__all__ = ["save_confusion_matrix", "confusion_title", "save_roc", "save_history", "save_figure",
           "legend_beside_if_crowded"]


def save_figure(fig: plt.Figure, path: str | Path) -> Path:
    """Save ``fig`` as PNG atomically and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def save_confusion_matrix(cm: np.ndarray, class_names: list[str], path: str | Path, title: str = "",
                          model: str = "") -> Path:
    """Annotated confusion matrix (rows = truth, columns = prediction).

    The title names the model: ``title`` when given, else ``confusion matrix — <model>``, where
    ``model`` defaults to the name of the folder the PNG is written to (a run directory is named
    after its recipe), so two matrices side by side in a report are told apart.
    """
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(int(v)), ha="center", va="center",
                color="white" if v > cm.max() / 2 else "black")
    ax.set_xticks(range(len(class_names)), class_names)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(confusion_title(path, title, model), fontsize=9)
    return save_figure(fig, path)


def confusion_title(path: str | Path, title: str = "", model: str = "") -> str:
    """``title``, else ``confusion matrix — <model or the PNG's folder name>``."""
    return title or f"confusion matrix — {model or Path(path).resolve().parent.name}"


def save_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path) -> Path:
    """ROC curves of several models, ``{label: (y_true, prob)}``."""
    from sklearn.metrics import roc_auc_score

    fig, ax = plt.subplots(figsize=(4, 4))
    for name, (y, p) in curves.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{name} (AUROC {roc_auc_score(y, p):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.set_xlabel("1 − specificity")
    ax.set_ylabel("sensitivity")
    legend_beside_if_crowded(ax, "lower right", len(curves))
    ax.set_title("ROC (test)")
    return save_figure(fig, path)


def legend_beside_if_crowded(ax: plt.Axes, loc: str, n: int, max_inside: int = 3) -> None:
    """A legend inside ``ax`` at ``loc`` for a few curves; beside the axes when there are more
    (one-vs-rest curves of 14 findings would cover the plot)."""
    if n <= max_inside:
        ax.legend(loc=loc, fontsize=8)
    else:
        ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)


def _num(v: object) -> float:
    return float(v) if v not in (None, "") else float("nan")  # type: ignore[arg-type]


def save_history(rows: list[dict], path: str | Path, title: str = "", monitor: str = "val_auroc") -> Path:
    """Losses and the validation ``monitor`` per epoch (two panels, labels kept inside the figure);
    rows with a ``stage`` (AG-CNN) are drawn one after the other, one line per stage."""
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 3), layout="constrained")
    stages = list(dict.fromkeys(r.get("stage", "main") for r in rows))
    offset = 0
    for st in stages:
        rs = [r for r in rows if r.get("stage", "main") == st]
        ep = [offset + int(r["epoch"]) + 1 for r in rs]
        suffix = "" if len(stages) == 1 else f" ({st})"
        for key in ("train_loss", "val_loss"):
            axes[0].plot(ep, [_num(r.get(key)) for r in rs], marker="o", label=key + suffix)
        axes[1].plot(ep, [_num(r.get(monitor)) for r in rs], marker="o", label=st)
        offset = ep[-1] if ep else offset
    axes[0].set_xlabel("epoch")
    axes[0].set_title("loss", fontsize=9)
    axes[0].legend(fontsize=7)
    axes[1].set_xlabel("epoch")
    axes[1].set_title(f"validation {monitor.removeprefix('val_')}", fontsize=9)  # not a squeezed y label
    if len(stages) > 1:
        axes[1].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
