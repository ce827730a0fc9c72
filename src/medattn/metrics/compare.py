"""Paired comparison of two models evaluated on the same items (e.g. attention vs baseline).

The same bootstrap resamples (patients when groups exist, else items) are applied to both
models' predictions, so the interval of the *difference* accounts for their correlation. The
two-sided p-value inverts the percentile interval: ``p = min(1, 2·min(P*(Δ ≤ 0), P*(Δ ≥ 0)))``
with a +1 correction, so ``p < α`` exactly when 0 lies outside the ``1 − α`` interval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medattn.errors import DataError
from medattn.metrics.bootstrap import group_resample_indices

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["paired_bootstrap", "load_predictions", "compare_prediction_tables"]

MetricFn = Callable[[np.ndarray], dict[str, float]]


def paired_bootstrap(
    fn_a: MetricFn, fn_b: MetricFn, n_items: int,
    groups: Sequence[object] | np.ndarray | None = None,
    n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Difference ``B − A`` of every metric with a paired percentile CI and a p-value.

    Args:
        fn_a: maps an index array of items to model A's ``{metric: value}``.
        fn_b: the same for model B (same items, same order).
        n_items: number of items.
        groups: per-item patient ids; whole patients are resampled when given.
        n_boot: number of resamples.
        alpha: 0.05 for 95% intervals.
        seed: seed of the resampling.

    Returns:
        ``{metric: {value_a, value_b, diff, ci_low, ci_high, p_value, n_boot}}``.
    """
    full = np.arange(n_items)
    point_a, point_b = fn_a(full), fn_b(full)
    keys = [k for k in point_a if k in point_b]
    diffs: dict[str, list[float]] = {k: [] for k in keys}
    for idx in group_resample_indices(groups, n_items, n_boot, seed):
        ra, rb = fn_a(idx), fn_b(idx)
        for k in keys:
            diffs[k].append(rb.get(k, np.nan) - ra.get(k, np.nan))
    out = {}
    for k in keys:
        d = np.asarray(diffs[k], dtype=np.float64)
        d = d[np.isfinite(d)]
        if len(d):
            lo, hi = np.quantile(d, [alpha / 2, 1 - alpha / 2])
            n = len(d)
            p = min(1.0, 2 * min((np.sum(d <= 0) + 1) / (n + 1), (np.sum(d >= 0) + 1) / (n + 1)))
        else:
            lo = hi = p = np.nan
        out[k] = {"value_a": float(point_a[k]), "value_b": float(point_b[k]),
                  "diff": float(point_b[k] - point_a[k]), "ci_low": float(lo), "ci_high": float(hi),
                  "p_value": float(p), "n_boot": int(len(d))}
    return out


def load_predictions(path: str | Path) -> tuple[Path, pd.DataFrame]:
    """Read a run's ``test_predictions.csv`` (a run folder or the CSV itself) as a DataFrame.

    Raises:
        DataError: missing file, or no ``file``/``label``/``prob_*`` columns.
    """
    import pandas as pd

    p = Path(path)
    csv = p / "test_predictions.csv" if p.is_dir() else p
    if not csv.is_file():
        raise DataError(f"{csv} not found; pass a run folder holding test_predictions.csv or the CSV itself "
                        "(run `medattn evaluate` first)")
    try:
        df = pd.read_csv(csv, dtype={"file": str, "group": str, "label": str, "prediction": str, "true_label": str,
                                     "predicted_label": str}, keep_default_na=False)
    except Exception as exc:  # noqa: BLE001 - any parser failure is a malformed file
        raise DataError(f"{csv}: cannot be read as CSV ({exc})") from exc
    # the vocabulary of every prediction table: true_label / predicted_label (runs before 2026-12-05
    # wrote label / prediction); inside, the comparison code calls them label / prediction
    df = df.rename(columns={"true_label": "label", "predicted_label": "prediction"})
    probs = [c for c in df.columns if c.startswith("prob_")]
    seg = "file" in df.columns and not probs and all(c in df.columns for c in _SEG_METRICS)
    if not seg and ("file" not in df.columns or "label" not in df.columns or not probs):
        raise DataError(f"{csv}: needs columns file, true_label and prob_<class>, or a segmentation run's per-image "
                        f"{', '.join(_SEG_METRICS)} (found {list(df.columns)})")
    if df["file"].duplicated().any():
        dup = df["file"][df["file"].duplicated()].iloc[0]
        raise DataError(f"{csv}: item '{dup}' appears more than once in column 'file'")
    return csv, df


_SEG_METRICS = ("dice", "aji", "pq")


def _metric_fn(df: pd.DataFrame, csv: Path) -> MetricFn:
    """Headline metrics of one prediction table (binary, multiclass, multilabel, or a segmentation
    run's per-image metrics, averaged over the resampled images) on resampled rows."""
    from medattn.metrics.classification import binary_metrics
    from medattn.metrics.multiclass import multiclass_metrics

    probs = [c for c in df.columns if c.startswith("prob_")]
    if not probs:
        cols = [c for c in ("dice", "iou", "aji", "aji_plus", "dq", "sq", "pq") if c in df.columns]
        per = {c: df[c].to_numpy(np.float64) for c in cols}
        return lambda i: {c: float(np.nanmean(v[i])) for c, v in per.items()}
    labels = [str(v) for v in df["label"]]
    if len(probs) > 1 and labels and all(len(v) == len(probs) and set(v) <= {"0", "1"} for v in labels):
        return _multilabel_fn(df, probs, labels, csv)
    df = df.copy()
    for col in ("label", "prediction"):  # class indices were read as text: back to integers
        if col in df.columns and len(df) and all(str(v).lstrip("-").isdigit() for v in df[col]):
            df[col] = df[col].astype(np.int64)
    y = np.asarray(df["label"])
    if len(probs) > 1:
        names = [c[5:] for c in probs]
        if not np.issubdtype(y.dtype, np.integer):
            lookup = {n: i for i, n in enumerate(names)}
            if not set(map(str, y)) <= set(lookup):
                raise DataError(f"{csv}: labels {sorted(set(map(str, y)) - set(lookup))} have no prob_ column")
            y = np.asarray([lookup[str(v)] for v in y])
        prob = df[probs].to_numpy(np.float64)
        pred = np.asarray(df["prediction"]) if "prediction" in df.columns else None
        if pred is not None and not np.issubdtype(pred.dtype, np.integer):
            pred = np.asarray([names.index(str(v)) if str(v) in names else -1 for v in pred])
        return lambda i: multiclass_metrics(y[i], prob[i], None if pred is None else pred[i])
    yb = y.astype(np.int64)
    prob1 = df[probs[0]].to_numpy(np.float64)
    hard = (df["prediction"].to_numpy(np.float64) if "prediction" in df.columns
            else (prob1 >= 0.5).astype(np.float64))

    def fn(i: np.ndarray) -> dict[str, float]:
        rank = binary_metrics(yb[i], prob1[i], 0.5)
        thr = binary_metrics(yb[i], hard[i], 0.5)
        return {"auroc": rank["auroc"], "auprc": rank["auprc"], "accuracy": thr["accuracy"],
                "balanced_accuracy": thr["balanced_accuracy"], "sensitivity": thr["recall"],
                "specificity": thr["specificity"], "f1": thr["f1"]}
    return fn


def _multilabel_fn(df: pd.DataFrame, probs: list[str], labels: list[str], csv: Path) -> MetricFn:
    """Multilabel table (``label``/``prediction`` as 0/1 strings, one character per finding)."""
    from medattn.metrics.multilabel import multilabel_metrics

    names = [c[5:] for c in probs]
    y = np.asarray([[int(c) for c in v] for v in labels], dtype=np.int64)
    prob = df[probs].to_numpy(np.float64)
    hard = None
    if "prediction" in df.columns:
        preds = [str(v) for v in df["prediction"]]
        if not all(len(v) == len(probs) and set(v) <= {"0", "1"} for v in preds):
            raise DataError(f"{csv}: column 'prediction' must hold one 0/1 character per finding "
                            f"({len(probs)}), like column 'label'")
        hard = np.asarray([[int(c) for c in v] for v in preds], dtype=np.float64)
    rank_keys = ("mean_auroc", "mean_auprc")

    def fn(i: np.ndarray) -> dict[str, float]:
        out = multilabel_metrics(y[i], prob[i], names, 0.5)
        if hard is not None:  # threshold metrics from the stored (validation-thresholded) decisions
            thr = multilabel_metrics(y[i], hard[i], names, 0.5)
            out.update({k: v for k, v in thr.items() if k.startswith("macro_")})
        else:
            out = {k: v for k, v in out.items() if k in rank_keys or k.startswith("auroc_")}
        return out
    return fn


def compare_prediction_tables(
    run_a: str | Path, run_b: str | Path, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05,
) -> dict[str, object]:
    """Paired bootstrap comparison of two runs' ``test_predictions.csv`` on the same items.

    Threshold metrics use each run's stored ``prediction`` column (its validation-chosen
    threshold); AUROC/AUPRC use the probabilities. Patients (column ``group``) are resampled when
    present.

    Raises:
        DataError: the runs were evaluated on different items or disagree on an item's label.
    """
    csv_a, a = load_predictions(run_a)
    csv_b, b = load_predictions(run_b)
    fa, fb = set(a["file"]), set(b["file"])
    if fa != fb:
        only_a, only_b = sorted(fa - fb), sorted(fb - fa)
        raise DataError(
            f"{csv_a} and {csv_b} were evaluated on different items ({len(only_a)} only in A, e.g. "
            f"{only_a[:2]}; {len(only_b)} only in B, e.g. {only_b[:2]}); re-evaluate both on the same split")
    b = b.set_index("file").loc[list(a["file"])].reset_index()
    if "label" in a.columns and [str(v) for v in a["label"]] != [str(v) for v in b.get("label", a["label"])]:
        raise DataError(f"{csv_a} and {csv_b} disagree on the labels of the same items; "
                        "they were evaluated against different ground truth")
    groups = None
    if "group" in a.columns and (a["group"] != "").all():
        groups = np.asarray(a["group"])
    res = paired_bootstrap(_metric_fn(a, csv_a), _metric_fn(b, csv_b), len(a), groups, n_boot, alpha, seed)
    return {"run_a": str(csv_a), "run_b": str(csv_b), "n_items": len(a),
            "n_groups": int(len(set(groups))) if groups is not None else None,
            "resampled": "groups" if groups is not None else "items", "alpha": alpha,
            "difference": "B - A", "metrics": res}
