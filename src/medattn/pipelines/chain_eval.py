"""Is segmenting first worth it? Chained pipeline vs the classifier alone, on the same items.

Both arms see the same test images; the classifier alone gets the untouched image, the chain
gets the emphasised one. :func:`medattn.metrics.compare.paired_bootstrap` applies the same
resamples (patients when known) to both, so the interval of the difference accounts for their
correlation. Differences are ``chained − alone``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medattn.errors import DataError
from medattn.io import atomic_write_json, atomic_write_text

__all__ = ["evaluate_chain", "items_from_run", "metric_fn"]


def metric_fn(task: str, y: np.ndarray, prob: np.ndarray, *, class_names: list[str], ordinal: bool = False,
              threshold: float = 0.5, thresholds: Sequence[float] | None = None) -> Callable[[np.ndarray], dict[str, float]]:
    """``indices → {metric: value}`` for one arm (the classifier's task and thresholds)."""
    if task == "binary":
        from medattn.metrics.classification import binary_metrics

        return lambda i: binary_metrics(y[i], prob[i], threshold)
    if task == "multiclass":
        from medattn.metrics.multiclass import multiclass_metrics
        from medattn.metrics.ordinal import ordinal_metrics

        def fn(i: np.ndarray) -> dict[str, float]:
            row = multiclass_metrics(y[i], prob[i])
            return {**row, **ordinal_metrics(y[i], prob[i], len(class_names))} if ordinal else row
        return fn
    from medattn.metrics.multilabel import multilabel_metrics

    th = np.asarray(thresholds if thresholds is not None else [0.5] * len(class_names), dtype=np.float64)
    return lambda i: multilabel_metrics(y[i], prob[i], class_names, th)


def _is_ordinal(meta: dict[str, Any]) -> bool:
    recipe = meta.get("recipe") or {}
    return bool(isinstance(recipe, dict) and (recipe.get("task") or {}).get("ordinal"))


def items_from_run(run_dir: str | Path, split: str = "test", data: str | Path | None = None) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """``(image paths, labels, groups)`` of one split of a finished classification run.

    Reads ``split.csv`` and the data folder recorded in ``run.json`` (or ``data``). Works for the
    file-based formats with one label per item (folders, csv, idc).
    """
    import json

    from medattn.data.splits import read_split_csv

    run = Path(run_dir)
    table = read_split_csv(run / "split.csv")
    info = json.loads((run / "run.json").read_text()) if (run / "run.json").is_file() else {}
    root = Path(data or info.get("data") or "")
    if not str(root) or not root.exists():
        raise DataError(f"{run}/run.json names no existing data folder; pass --data PATH")
    base = root.parent if root.is_file() else root
    rows = table[table["split"] == split]
    if rows.empty:
        raise DataError(f"{run}/split.csv has no '{split}' items")
    if any("#" in f for f in rows["file"]):
        raise DataError(f"{run}: items inside HDF5 files cannot be chained; export them as images first")
    try:
        labels = rows["label"].astype(int).to_numpy()
    except ValueError:
        raise DataError(f"{run}/split.csv: labels are not class indices (multi-label run?); "
                        "pass images and labels to evaluate_chain() directly") from None
    return [base / f for f in rows["file"]], labels, rows["group"].astype(str).to_numpy()


def _write_predictions(path: Path, ids: list[str], groups: np.ndarray | None, y: np.ndarray, prob: np.ndarray,
                       names: list[str], task: str, thr: float) -> None:
    p = prob.reshape(len(y), -1)
    if task == "binary":
        header, pred = [f"prob_{names[1] if len(names) > 1 else 'positive'}"], (p[:, 0] >= thr).astype(int)
    else:
        header, pred = [f"prob_{n}" for n in names], p.argmax(1)
    lines = [",".join(["file", "group", "true_label", *header, "predicted_label"])]
    for i, fid in enumerate(ids):
        lab = "".join(str(int(v)) for v in y[i]) if y.ndim > 1 else str(int(y[i]))
        g = str(groups[i]) if groups is not None else ""
        lines.append(",".join([fid.replace(",", "_"), g, lab, *(f"{v:.6f}" for v in p[i]), str(int(pred[i]))]))
    atomic_write_text(path, "\n".join(lines) + "\n")


def evaluate_chain(pipeline: Any, images: Sequence[Any], labels: Sequence[Any] | np.ndarray, *,
                   groups: Sequence[Any] | np.ndarray | None = None, n_boot: int = 1000, alpha: float = 0.05,
                   seed: int = 0, ordinal: bool | None = None, out_dir: str | Path | None = None,
                   batch_size: int = 32) -> dict[str, Any]:
    """Paired comparison of the chained pipeline against its classifier alone.

    Args:
        pipeline: a :class:`~medattn.pipelines.segment_classify.SegmentClassifyPipeline`.
        images: the test images (paths, PIL images or arrays).
        labels: class indices (binary/multiclass) or ``N×K`` multi-hot rows.
        groups: patient ids (whole patients are resampled when given).
        n_boot, alpha, seed: bootstrap settings.
        ordinal: add grade metrics (QWK, …); default: the classifier's recipe says ``task.ordinal``.
        out_dir: when given, writes ``alone/test_predictions.csv``, ``chained/test_predictions.csv``
            (readable by ``medattn compare``) and ``chain_comparison.json``.

    Returns:
        ``{"n_items", "n_groups", "difference", "metrics": {m: {value_a (alone), value_b (chained),
        diff, ci_low, ci_high, p_value}}, ...}``.
    """
    from medattn.metrics.compare import paired_bootstrap

    if len(images) == 0:
        raise DataError("no test images to evaluate the chain on")
    y = np.asarray(labels)
    if len(y) != len(images):
        raise DataError(f"{len(images)} images but {len(y)} labels; pass one label per image")
    chained, alone = pipeline.probabilities(list(images), batch_size=batch_size)
    cls = pipeline.classifier
    task, names = cls.task, cls.class_names
    ordinal = _is_ordinal(cls.meta) if ordinal is None else ordinal
    kw = {"class_names": names, "ordinal": ordinal, "threshold": cls.threshold, "thresholds": cls.meta.get("thresholds")}
    g = None if groups is None else np.asarray(groups).astype(str)
    if g is not None and len(set(g)) == len(g):
        g = None  # one item per group: resampling items is the same thing
    res = paired_bootstrap(metric_fn(task, y, alone, **kw), metric_fn(task, y, chained, **kw), len(y), g,
                           n_boot, alpha, seed)
    doc: dict[str, Any] = {"a": "classifier alone", "b": f"chained ({pipeline.mode})", "difference": "chained - alone",
                           "n_items": len(y), "n_groups": None if g is None else int(len(set(g))),
                           "resampled": "groups" if g is not None else "items", "alpha": alpha, "n_boot": n_boot,
                           "settings": pipeline.settings(), "ordinal": ordinal, "metrics": res}
    if out_dir is not None:
        from medattn.explain.explain import source_name

        out = Path(out_dir)
        ids = [source_name(im, i) if not isinstance(im, (str, Path)) else str(im) for i, im in enumerate(images)]
        for arm, prob in (("alone", alone), ("chained", chained)):
            (out / arm).mkdir(parents=True, exist_ok=True)
            _write_predictions(out / arm / "test_predictions.csv", ids, g, y, prob, names, task, cls.threshold)
        atomic_write_json(out / "chain_comparison.json", doc)
    return doc
