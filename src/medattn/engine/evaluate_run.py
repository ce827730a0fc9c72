"""Evaluate a trained model of any task on a run's test split (thresholds from validation).

Writes ``metrics.json`` (each metric with a 95% bootstrap CI, patients resampled when known),
``test_predictions.csv``, ``per_class_metrics.csv`` and the figures of the task.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from medattn.engine.config import Recipe
from medattn.io import atomic_write_json, atomic_write_text

__all__ = ["evaluate_model", "predict_scores", "predict_masks"]


@torch.no_grad()
def predict_scores(model: nn.Module, ds: Dataset, kind: str, batch_size: int = 64) -> np.ndarray:
    """Probabilities: ``N`` (binary), ``N×K`` softmax (multiclass) or sigmoid (multilabel/agcnn)."""
    model.eval()
    dev = next(model.parameters()).device
    out = []
    for batch in DataLoader(ds, batch_size=batch_size, shuffle=False):
        logits = model(batch[0].to(dev)).float()
        out.append((torch.softmax(logits, 1) if kind == "multiclass" else torch.sigmoid(logits)).cpu().numpy())
    p = np.concatenate(out)
    return p[:, 0] if kind == "binary" and p.ndim == 2 else p


@torch.no_grad()
def predict_masks(model: nn.Module, ds: Dataset) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per image ``(ground truth, foreground probability, class map)`` with padding removed."""
    from medattn.engine.seg_task import foreground_prob

    model.eval()
    dev = next(model.parameters()).device
    out = []
    for i in range(len(ds)):  # type: ignore[arg-type]
        x, m = ds[i][0], ds[i][1]
        logits = model(x[None].to(dev)).float()
        prob = foreground_prob(logits)[0].cpu().numpy()
        cls = logits.argmax(1)[0].cpu().numpy() if logits.shape[1] > 1 else (prob >= 0.5).astype(np.int64)
        gt = np.asarray(m).reshape(prob.shape)
        rows, cols = np.nonzero(gt >= 0)
        h, w = (rows.max() + 1, cols.max() + 1) if len(rows) else gt.shape
        out.append((gt[:h, :w], prob[:h, :w], cls[:h, :w]))
    return out


def _instances(gt: np.ndarray, cls: np.ndarray, three_class: bool) -> tuple[np.ndarray, np.ndarray]:
    from scipy import ndimage

    true = gt if gt.max() > 1 else ndimage.label(gt > 0)[0]
    if three_class:
        from skimage.segmentation import expand_labels

        seeds = ndimage.label(cls == 1)[0]
        pred = expand_labels(seeds, distance=3) * (cls > 0)
    else:
        pred = ndimage.label(cls > 0)[0]
    return true, pred


def _ci_block(res: dict[str, Any], groups: Any, alpha: float) -> dict[str, Any]:
    for v in res.values():
        v["resampled"] = "groups" if groups is not None else "items"
    return res


def _write_table(path: Path, per: dict[str, dict[str, float]], first: str = "class") -> None:
    keys: list[str] = []
    for row in per.values():
        keys += [k for k in row if k not in keys]
    lines = [",".join([first, *keys])]
    lines += [",".join([str(name), *(f"{row.get(k, '')}" for k in keys)]) for name, row in per.items()]
    atomic_write_text(path, "\n".join(lines) + "\n")


def evaluate_model(recipe: Recipe, model: nn.Module, data: Any, out_dir: str | Path, *, split: str = "test",
                   run_name: str = "") -> dict[str, Any]:
    """Score ``model`` on ``split`` of ``data`` (a :class:`~medattn.engine.datamodule.RunData`).

    Thresholds are chosen on the validation split only and applied unchanged. Returns
    ``{"metrics", "thresholds", "y", "prob"}``.
    """
    from medattn.metrics.bootstrap import bootstrap_ci
    from medattn.metrics.threshold import choose_threshold
    from medattn.report.plots import save_confusion_matrix, save_roc

    out = Path(out_dir)
    kind = "multilabel" if recipe.task.type == "agcnn" else recipe.task.type
    ev = recipe.evaluation
    ds = getattr(data, split if split != "val" else "valid")
    ids = ds.item_ids()
    groups = ds.groups() if hasattr(ds, "groups") else None
    gset = groups if groups is not None and len(set(groups)) < len(groups) else None
    names = data.class_names
    seed = recipe.trainer.seed
    doc: dict[str, Any] = {"split": split, "n_items": len(ids), "n_groups": len(set(groups)) if groups else None,
                           "ci": f"{100 * (1 - ev.ci_alpha):.0f}% percentile bootstrap", "n_boot": ev.n_boot}
    if kind == "segmentation":
        from medattn.metrics.instance import instance_metrics
        from medattn.metrics.segmentation import segmentation_metrics

        preds = predict_masks(model, ds)
        three = recipe.task.seg_target == "three_class"
        per_img = []
        for gt, _, cls in preds:
            row = segmentation_metrics(gt > 0, cls > 0)
            t, p = _instances(gt, cls, three)
            inst = instance_metrics(t, p)
            row.update({k: v for k, v in inst.items() if k in ("aji", "pq", "dq", "sq", "aji_plus")})
            per_img.append(row)
        keys = list(per_img[0])
        arr = {k: np.asarray([r[k] for r in per_img], dtype=np.float64) for k in keys}
        res = bootstrap_ci(lambda i: {k: float(np.nanmean(arr[k][i])) for k in keys}, len(per_img), gset,
                           max(ev.n_boot, 1), ev.ci_alpha, seed)
        doc["metrics"] = _ci_block(res, gset, ev.ci_alpha)
        doc["aggregation"] = "mean over images"
        atomic_write_json(out / "metrics.json", doc)
        _write_table(out / "test_predictions.csv", {f: r for f, r in zip(ids, per_img, strict=True)}, "file")
        return {"metrics": res, "thresholds": None, "per_image": per_img}
    pv = predict_scores(model, data.valid, kind)
    yv = np.asarray(data.valid.labels())
    pt = predict_scores(model, ds, kind)
    yt = np.asarray(ds.labels())
    if kind == "binary":
        from medattn.metrics.classification import binary_confusion, binary_metrics

        thr = choose_threshold(yv, pv, "youden") if ev.threshold == "youden" else 0.5
        res = bootstrap_ci(lambda i: binary_metrics(yt[i], pt[i], thr), len(yt), gset, ev.n_boot, ev.ci_alpha, seed)
        pred = (pt >= thr).astype(int)
        thresholds: Any = thr
        save_confusion_matrix(binary_confusion(yt, pt, thr), names, out / "confusion_matrix.png")
        save_roc({run_name or recipe.name: (yt, pt)}, out / "roc_curve.png")
        prob_cols = [pt[:, None]]
        header = [f"prob_{names[1] if len(names) > 1 else 'positive'}"]
    elif kind == "multiclass":
        from medattn.metrics.multiclass import (
            multiclass_confusion,
            multiclass_metrics,
            multiclass_per_class,
        )
        from medattn.metrics.ordinal import ordinal_metrics

        def mc_fn(i: np.ndarray) -> dict[str, float]:  # ordered grades (task.ordinal) add kappa & co
            row = multiclass_metrics(yt[i], pt[i])
            return {**row, **ordinal_metrics(yt[i], pt[i], len(names))} if recipe.task.ordinal else row

        res = bootstrap_ci(mc_fn, len(yt), gset, ev.n_boot, ev.ci_alpha, seed)
        pred = pt.argmax(1)
        thresholds = None
        _write_table(out / "per_class_metrics.csv", multiclass_per_class(yt, pt, names))
        save_confusion_matrix(multiclass_confusion(yt, pred, len(names)), names, out / "confusion_matrix.png")
        prob_cols, header = [pt], [f"prob_{n}" for n in names]
    else:
        from medattn.metrics.multilabel import multilabel_metrics, multilabel_per_label

        thr_list = [choose_threshold(yv[:, k], pv[:, k], "youden") if ev.threshold == "youden" and
                    0 < yv[:, k].sum() < len(yv) else 0.5 for k in range(yt.shape[1])]
        thr_arr = np.asarray(thr_list)
        res = bootstrap_ci(lambda i: multilabel_metrics(yt[i], pt[i], names, thr_arr), len(yt), gset, ev.n_boot,
                           ev.ci_alpha, seed)
        pred = (pt >= thr_arr).astype(int)
        thresholds = dict(zip(names, thr_list, strict=True))
        _write_table(out / "per_class_metrics.csv", multilabel_per_label(yt, pt, names, thr_arr), "label")
        prob_cols, header = [pt], [f"prob_{n}" for n in names]
    doc["thresholds"] = thresholds
    doc["threshold_method"] = f"{ev.threshold} on validation" if kind != "multiclass" else "argmax"
    doc["metrics"] = _ci_block(res, gset, ev.ci_alpha)
    atomic_write_json(out / "metrics.json", doc)
    probs = np.concatenate(prob_cols, axis=1)
    lab = yt if yt.ndim == 1 else ["".join(str(int(v)) for v in r) for r in yt]
    prd = pred if pred.ndim == 1 else ["".join(str(int(v)) for v in r) for r in pred]
    lines = [",".join(["file", "group", "label", *header, "prediction"])]
    for i, fid in enumerate(ids):
        g = groups[i] if groups else ""
        cells = [f'"{fid}"' if "," in str(fid) else str(fid), str(g), str(lab[i] if yt.ndim > 1 else int(lab[i]))]
        cells += [f"{v:.6f}" for v in probs[i]] + [str(prd[i] if pred.ndim > 1 else int(prd[i]))]
        lines.append(",".join(cells))
    atomic_write_text(out / "test_predictions.csv", "\n".join(lines) + "\n")
    return {"metrics": res, "thresholds": thresholds, "y": yt, "prob": pt}
