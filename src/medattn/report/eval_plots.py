"""Evaluation figures: precision-recall curves, reliability diagrams, segmentation TP/FP/FN overlays.

All PNGs are written atomically through :func:`medattn.report.plots.save_figure`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medattn.errors import DataError
from medattn.report.plots import legend_beside_if_crowded, plt, save_figure

__all__ = ["save_pr_curve", "save_reliability", "seg_overlay_rgb", "save_seg_overlay", "OVERLAY_COLOURS"]

#: RGB colours of the overlay: true positive, false positive, false negative pixels.
OVERLAY_COLOURS = {"tp": (0, 170, 0), "fp": (230, 30, 30), "fn": (30, 90, 255)}


def save_pr_curve(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, title: str = "") -> Path:
    """Precision-recall curves of several models, ``{label: (y_true, prob)}``, with AUPRC (AP) and
    the prevalence (the curve of a random classifier)."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    fig, ax = plt.subplots(figsize=(4, 4))
    prevalence = None
    for name, (y, p) in curves.items():
        y = np.asarray(y).astype(int)
        if y.min(initial=0) == y.max(initial=0):
            continue  # undefined without both classes
        prec, rec, _ = precision_recall_curve(y, p)
        ax.step(rec, prec, where="post", label=f"{name} (AUPRC {average_precision_score(y, p):.3f})")
        prevalence = float(y.mean())
    if prevalence is not None:
        ax.axhline(prevalence, ls="--", c="grey", lw=0.8, label=f"prevalence {prevalence:.2f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall (sensitivity)")
    ax.set_ylabel("precision (PPV)")
    legend_beside_if_crowded(ax, "lower left", len(curves))
    ax.set_title(title or "precision-recall (test)")
    return save_figure(fig, path)


def save_reliability(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, n_bins: int = 10, title: str = "",
) -> Path:
    """Reliability diagram (observed frequency vs predicted probability, with ECE) above a histogram
    of the predictions, for ``{label: (y_true, prob)}``; ``prob`` may be ``(N,)`` or ``(N, C)``."""
    from medattn.metrics.calibration import reliability_curve

    fig, (ax, hist) = plt.subplots(2, 1, figsize=(4, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1]},
                                   layout="constrained")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8, label="perfect calibration")
    for name, (y, p) in curves.items():
        rc = reliability_curve(y, p, n_bins)
        ok = rc.count > 0
        ax.plot(rc.mean_confidence[ok], rc.observed[ok], marker="o", ms=3, label=f"{name} (ECE {rc.ece:.3f})")
        centres = (rc.bin_edges[:-1] + rc.bin_edges[1:]) / 2
        hist.bar(centres, rc.count, width=1 / n_bins, alpha=0.5, label=name)
    ax.set_ylabel("observed frequency")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title or "calibration (test)")
    hist.set_xlabel("predicted probability")
    hist.set_ylabel("items")
    # below both panels, outside the axes: the legend never hides a reliability curve
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", fontsize=8, frameon=False)
    return save_figure(fig, path)


def seg_overlay_rgb(image: np.ndarray, true: np.ndarray, pred: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """``uint8`` RGB image with TP (green), FP (red) and FN (blue) foreground pixels blended in.

    Args:
        image: ``(H, W)`` grey or ``(H, W, 3|4)`` colour image (uint8 or float in [0, 1]).
        true: ground-truth mask (non-zero = foreground; instance labels accepted).
        pred: predicted mask of the same shape.
        alpha: opacity of the colours.
    """
    img = np.asarray(image)
    t, p = np.asarray(true) != 0, np.asarray(pred) != 0
    if t.shape != p.shape or img.shape[:2] != t.shape:
        raise DataError(f"image {img.shape[:2]}, true mask {t.shape} and predicted mask {p.shape} must have "
                        "the same height and width")
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3].astype(np.float64)
    if img.max(initial=0) <= 1.0:
        img = img * 255.0
    out = img.copy()
    for key, m in (("tp", t & p), ("fp", ~t & p), ("fn", t & ~p)):
        out[m] = (1 - alpha) * img[m] + alpha * np.asarray(OVERLAY_COLOURS[key], dtype=np.float64)
    return np.clip(out, 0, 255).astype(np.uint8)


def save_seg_overlay(
    image: np.ndarray, true: np.ndarray, pred: np.ndarray, path: str | Path, title: str = "",
) -> Path:
    """PNG of :func:`seg_overlay_rgb` with a colour legend and the image's Dice in the title."""
    from matplotlib.patches import Patch

    from medattn.metrics.segmentation import dice

    fig, ax = plt.subplots(figsize=(4.2, 4.4))
    ax.imshow(seg_overlay_rgb(image, true, pred))
    ax.set_axis_off()
    handles = [Patch(color=np.asarray(c) / 255, label=k.upper()) for k, c in OVERLAY_COLOURS.items()]
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, -0.09), ncol=3, fontsize=8, frameon=False)
    ax.set_title(f"{title} Dice {dice(true, pred):.3f}".strip(), fontsize=9)
    return save_figure(fig, path)
