"""Evaluation files of a run directory in one call: per-class CSV, ROC, PR and calibration PNGs,
per-image segmentation CSV and TP/FP/FN overlays (the engine's evaluate step calls these)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from medattn.io import atomic_write_text, ensure_dir

__all__ = ["write_per_class_csv", "write_classification_figures", "write_segmentation_outputs"]


def write_per_class_csv(per_class: Mapping[str, Mapping[str, object]], path: str | Path) -> Path:
    """``per_class_metrics.csv``: one row per class (or finding), one column per metric."""
    cols: list[str] = []
    for m in per_class.values():
        cols += [c for c in m if c not in cols]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["class", *cols])
    for name, m in per_class.items():
        w.writerow([name, *(repr(float(v)) if isinstance(v, float) else v for v in (m.get(c, "") for c in cols))])
    return atomic_write_text(path, buf.getvalue())


def write_classification_figures(
    out_dir: str | Path, y_true: np.ndarray, prob: np.ndarray, class_names: list[str] | None = None,
    n_bins: int = 10,
) -> dict[str, Path]:
    """``roc_curve.png``, ``pr_curve.png`` and ``calibration.png`` of test predictions.

    Binary ``prob`` is ``(N,)`` (positive class); multiclass ``(N, C)`` draws one-vs-rest curves per
    class and a top-label reliability diagram.
    """
    from medattn.report.eval_plots import save_pr_curve, save_reliability
    from medattn.report.plots import save_roc

    out = ensure_dir(out_dir)
    y = np.asarray(y_true).astype(np.int64).reshape(-1)
    p = np.asarray(prob, dtype=np.float64)
    if p.ndim == 1:
        curves = {"model": (y, p)}
    else:
        names = class_names or [f"class_{k}" for k in range(p.shape[1])]
        curves = {names[k]: ((y == k).astype(int), p[:, k]) for k in range(p.shape[1])
                  if 0 < (y == k).sum() < len(y)}
    files = {"calibration": save_reliability({"model": (y, p)}, out / "calibration.png", n_bins)}
    if curves:
        files["roc"] = save_roc(curves, out / "roc_curve.png")
        files["pr"] = save_pr_curve(curves, out / "pr_curve.png")
    return files


def write_segmentation_outputs(
    out_dir: str | Path, items: Iterable[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]],
    match_iou: float = 0.5, max_overlays: int = 12,
) -> dict[str, object]:
    """``segmentation_metrics.csv`` (per image) and ``overlays/<name>.png`` (TP/FP/FN) for the first
    ``max_overlays`` images that come with an image.

    Args:
        out_dir: run directory.
        items: ``(name, true_labels, pred_labels, image_or_None)`` per image.
        match_iou: PQ matching threshold.
        max_overlays: overlays to draw at most.

    Returns:
        ``{"csv": path, "overlays": [paths], "mean": {metric: mean over images}}``.
    """
    from medattn.metrics.seg_table import mean_row, segmentation_row, write_per_image_csv
    from medattn.report.eval_plots import save_seg_overlay

    out = ensure_dir(out_dir)
    rows, overlays = [], []
    for name, true, pred, image in items:
        rows.append(segmentation_row(name, true, pred, match_iou))
        if image is not None and len(overlays) < max_overlays:
            overlays.append(save_seg_overlay(image, true, pred, ensure_dir(out / "overlays") / f"{name}.png", name))
    csv_path = write_per_image_csv(rows, out / "segmentation_metrics.csv")
    return {"csv": csv_path, "overlays": overlays, "mean": mean_row(rows)}
