"""Evaluate a trained binary classifier: threshold on validation, metrics with CIs on test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch import nn
from torch.utils.data import Dataset

from medattn.engine.predict import predict_probs
from medattn.io import atomic_write_json, atomic_write_text
from medattn.metrics import binary_confusion, choose_threshold
from medattn.metrics.summary import binary_summary
from medattn.report.plots import save_confusion_matrix

__all__ = ["evaluate_binary"]


def evaluate_binary(
    model: nn.Module, val_ds: Dataset, test_ds: Dataset, out_dir: str | Path, *,
    class_names: list[str], test_ids: list[str], test_groups: list[str] | None = None,
    n_boot: int = 1000, seed: int = 0, tta: int = 1,
) -> dict[str, Any]:
    """Choose the threshold on validation (Youden's J), apply it unchanged to test.

    ``tta`` views (1, 2, 4 or 8 rotations/mirror images) are averaged for both splits.

    Writes ``metrics.json``, ``test_predictions.csv`` and ``confusion_matrix.png`` to ``out_dir``
    and returns ``{"threshold", "metrics", "y", "prob", "val_y", "val_prob"}``.
    """
    out = Path(out_dir)
    pv = predict_probs(model, val_ds, tta=tta)
    yv = np.asarray(val_ds.labels())  # type: ignore[attr-defined]
    thr = choose_threshold(yv, pv, "youden")
    pt = predict_probs(model, test_ds, tta=tta)
    yt = np.asarray(test_ds.labels())  # type: ignore[attr-defined]
    summary = binary_summary(yt, pt, thr, test_groups, n_boot=n_boot, seed=seed)
    atomic_write_json(out / "metrics.json", {
        "split": "test", "n_items": len(yt),
        "n_groups": len(set(test_groups)) if test_groups else None,
        "threshold": thr, "threshold_method": "youden on validation", "tta_views": tta,
        "ci": "95% percentile bootstrap", "metrics": summary,
    })
    pred = (pt >= thr).astype(int)
    lines = ["file,group,label,prob_" + class_names[1] + ",prediction"]
    for i, (fid, y, p, k) in enumerate(zip(test_ids, yt, pt, pred, strict=True)):
        g = test_groups[i] if test_groups else ""
        lines.append(f"{fid},{g},{int(y)},{p:.9g},{int(k)}")
    atomic_write_text(out / "test_predictions.csv", "\n".join(lines) + "\n")
    save_confusion_matrix(binary_confusion(yt, pt, thr), class_names, out / "confusion_matrix.png")
    return {"threshold": thr, "metrics": summary, "y": yt, "prob": pt, "val_y": yv, "val_prob": pv}
