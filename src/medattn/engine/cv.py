"""Grouped, stratified K-fold cross-validation of a recipe (``medattn train RECIPE --folds K``).

The items outside the recipe's test split (all of them with ``data.split.test_fraction: 0``) are
cut into K folds of whole groups (patients, source images), class-balanced. Fold ``k`` is scored
as the test split of run ``OUT/fold_k``; the other folds are split again by group into train and
valid (``data.split.val_fraction``), so checkpoints, thresholds and post-processing are chosen on
data that is neither trained on nor scored. The recipe's own test split, when present, is never
touched.

``OUT/`` holds ``fold_0 … fold_{K-1}`` (ordinary run directories with bundles), ``folds.csv``
(file, group, label, fold), ``cv_summary.json`` and ``cv_summary.csv`` (every metric per fold, its
reported value and 95% interval — see :func:`summarise_folds` — and the pooled out-of-fold values
with group-bootstrap CIs) and ``test_predictions.csv`` (the out-of-fold predictions, each made by the fold's own model
and threshold, with a ``fold`` column), so ``medattn compare CV_A CV_B`` pairs two CV runs item by
item. :func:`ensemble_bundle` (``medattn ensemble CV_DIR --out BUNDLE``) saves the fold models as
one bundle.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from medattn.errors import ConfigError
from medattn.io import atomic_write_json, atomic_write_text, ensure_dir

log = logging.getLogger(__name__)

__all__ = ["cross_validate", "fold_tables", "summarise_folds", "ensemble_bundle", "read_cv_summary",
           "MIN_FOLDS_T"]

MIN_FOLDS_T = 5
"""Fewer folds than this: the interval of a metric is the pooled out-of-fold bootstrap CI (a
t-interval on 2–4 fold values is too wide to mean anything and spills out of the metric's range)."""
_POOLED_NAMES = {"recall": "sensitivity"}  # a fold's metrics.json name → the pooled (compare) name


def fold_tables(table: Any, recipe: Any, folds: int) -> tuple[Any, list[Any]]:
    """Assign folds to the non-test items of a scanner ``table`` and build each fold's split.

    Returns:
        ``(folds_table, splits)``: the rows with their ``fold`` (``-1`` = the recipe's untouched test
        split) and, per fold, a ``file, split, group, label`` table (fold ``k`` = test, the other
        folds split by group into train/valid; the recipe's test rows are left out).
    """
    import pandas as pd

    from medattn.data.splits import make_split

    sp = recipe.data.split
    if folds < 2:
        raise ConfigError(f"--folds must be >= 2, got {folds}")
    base = make_split(table, ratios=(1.0 - sp.test_fraction, 0.0, sp.test_fraction), seed=sp.seed, folds=folds,
                      respect_official=sp.use_official)
    fold_of = dict(zip(base["file"].astype(str), base["fold"], strict=True))
    files = table["file"].astype(str)
    splits = []
    for k in range(folds):
        rest = table[files.map(lambda f, k=k: fold_of.get(f, -1) not in (-1, k)).to_numpy()]
        rest = rest.drop(columns=[c for c in ("split",) if c in rest.columns])
        rest.attrs = dict(table.attrs)
        inner = make_split(rest, ratios=(1.0 - sp.val_fraction, sp.val_fraction, 0.0), seed=sp.seed + 1 + k,
                           respect_official=False)
        held = base[base["fold"] == k][["file", "group", "label"]].assign(split="test")
        st = pd.concat([inner[["file", "split", "group", "label"]], held[["file", "split", "group", "label"]]],
                       ignore_index=True)
        st.attrs = dict(inner.attrs)
        splits.append(st)
    return base, splits


def _t_interval(values: list[float], alpha: float = 0.05) -> tuple[float, float, float, float]:
    """Mean, standard deviation and the two-sided t-interval of the mean across folds."""
    from scipy import stats

    v = np.asarray([x for x in values if x == x], dtype=np.float64)
    if len(v) == 0:
        return (math.nan,) * 4
    m = float(v.mean())
    if len(v) < 2:
        return m, math.nan, math.nan, math.nan
    sd = float(v.std(ddof=1))
    h = float(stats.t.ppf(1 - alpha / 2, len(v) - 1) * sd / math.sqrt(len(v)))
    return m, sd, m - h, m + h


def summarise_folds(per_fold: list[dict[str, float]], alpha: float = 0.05,
                    pooled: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Per metric: the fold values, their mean and SD, and the reported ``value`` with its interval.

    With at least :data:`MIN_FOLDS_T` folds the value is the mean across folds with its t-interval;
    with fewer, the pooled out-of-fold value with its group-bootstrap CI from ``pooled`` (when the
    metric is there; else the t-interval). Every interval is clipped to the metric's range
    (:func:`medattn.metrics.summary.metric_range`); ``interval`` says which one it is.
    """
    from medattn.metrics.summary import metric_range

    pooled = pooled or {}
    names: list[str] = []
    for row in per_fold:
        names += [k for k in row if k not in names]
    out = {}
    for n in names:
        vals = [float(r.get(n, math.nan)) for r in per_fold]
        m, sd, lo, hi = _t_interval(vals, alpha)
        k = sum(v == v for v in vals)
        p = pooled.get(n) or pooled.get(_POOLED_NAMES.get(n, ""))
        if k < MIN_FOLDS_T and p and all(math.isfinite(p.get(c, math.nan)) for c in ("value", "ci_low", "ci_high")):
            value, lo, hi = float(p["value"]), float(p["ci_low"]), float(p["ci_high"])
            how = f"pooled out-of-fold bootstrap CI ({k} folds, fewer than {MIN_FOLDS_T})"
        else:
            value, how = m, f"t-interval of the mean across {k} folds"
        a, b = metric_range(n)
        if (math.isfinite(lo) and lo < a) or (math.isfinite(hi) and hi > b):
            lo, hi = max(lo, a), min(hi, b)
            how += f", clipped to [{a:g}, {b:g}]"
        out[n] = {"folds": vals, "mean": m, "sd": sd, "value": value, "ci_low": lo, "ci_high": hi, "interval": how}
    return out


def _oof_predictions(out: Path, folds: int) -> Path | None:
    """Concatenate the folds' ``test_predictions.csv`` (with a ``fold`` column)."""
    import pandas as pd

    parts = []
    for k in range(folds):
        p = out / f"fold_{k}" / "test_predictions.csv"
        if p.is_file():
            parts.append(pd.read_csv(p, dtype=str, keep_default_na=False).assign(fold=k))
    if not parts:
        return None
    df = pd.concat(parts, ignore_index=True)
    return atomic_write_text(out / "test_predictions.csv", df.to_csv(index=False))


def _pooled(recipe: Any, out: Path) -> dict[str, Any] | None:
    """Out-of-fold metrics with group-bootstrap CIs (``medattn compare``'s metric definitions, so
    pooled and paired figures agree; segmentation: per-image metrics averaged over the images)."""
    from medattn.errors import DataError
    from medattn.metrics.bootstrap import bootstrap_ci
    from medattn.metrics.compare import _metric_fn, load_predictions

    try:
        csv, df = load_predictions(out)
    except DataError:  # no out-of-fold table (no fold wrote test predictions)
        return None
    fn = _metric_fn(df, csv)
    groups = df["group"].astype(str).tolist() if "group" in df.columns else None
    ev = recipe.evaluation
    return bootstrap_ci(fn, len(df), groups, max(ev.n_boot, 1), ev.ci_alpha, recipe.trainer.seed)


def cross_validate(recipe_ref: Any, *, out: str | Path, folds: int | None, data: str | Path | None = None,
                   smoke: bool = False, overrides: list[str] | None = None, resume: bool = False) -> dict[str, Any]:
    """Train and score ``folds`` runs of a recipe; write the CV summary into ``out``.

    With ``resume`` (``medattn train --resume OUT`` on a cross-validation directory) an interrupted
    cross-validation goes on with the recipe, data and folds it was started with: finished folds
    (their ``summary.json``) are kept, an interrupted fold continues from its last checkpoint, the
    rest are trained.
    """
    import pandas as pd
    import yaml

    from medattn.data.splits import write_split_csv
    from medattn.engine.config import Recipe, recipe_from_dict, recipe_to_yaml
    from medattn.engine.datamodule import scan_table
    from medattn.engine.runner import _data_root, resolve_recipe, train_run

    root_dir = ensure_dir(out)
    if (root_dir / "cv_summary.json").is_file():
        raise ConfigError(f"--out '{root_dir}' already holds a cross-validation; choose another --out"
                          + (" (it is finished: nothing to resume)" if resume else ""))
    if resume:
        if not (root_dir / "folds.csv").is_file() or not (root_dir / "recipe.yaml").is_file():
            raise ConfigError(f"--resume '{root_dir}': no folds.csv and recipe.yaml there; is it a cross-validation "
                              "directory (`medattn train RECIPE --folds K --out DIR`)?")
        recipe = recipe_from_dict(yaml.safe_load((root_dir / "recipe.yaml").read_text()),
                                  f"recipe '{root_dir}/recipe.yaml'")
        started = pd.read_csv(root_dir / "folds.csv", dtype={"file": str}, keep_default_na=False)
        folds = int(started["fold"].max()) + 1
        runs = [json.loads(r.read_text()) for r in sorted(root_dir.glob("fold_*/run.json"))]
        data = data or (runs[0].get("data") if runs else None)
        smoke = bool(runs[0].get("smoke", smoke)) if runs else smoke
    else:
        recipe = recipe_ref if isinstance(recipe_ref, Recipe) else resolve_recipe(recipe_ref, overrides, smoke)
    if folds is None:
        raise ConfigError("--folds K is needed to start a cross-validation")
    t0 = time.time()
    root = _data_root(recipe, data, root_dir, smoke)
    base, splits = fold_tables(scan_table(recipe, root), recipe, folds)
    if resume:
        was = dict(zip(started["file"].astype(str), started["fold"].astype(int), strict=True))
        now = dict(zip(base["file"].astype(str), base["fold"].astype(int), strict=True))
        if was != now:
            raise ConfigError(f"--resume '{root_dir}': the data under '{root}' no longer gives the folds in folds.csv "
                              "(files added, removed or relabelled); start a new cross-validation")
    else:
        atomic_write_text(root_dir / "recipe.yaml", recipe_to_yaml(recipe))
        write_split_csv(base, root_dir / "folds.csv")
    per_fold, seconds = [], []
    for k, st in enumerate(splits):
        fold_dir = root_dir / f"fold_{k}"
        t = time.time()
        if resume and (fold_dir / "summary.json").is_file():
            done = json.loads((fold_dir / "summary.json").read_text())
            log.info("fold %d of %d: finished earlier, kept", k + 1, folds)
            per_fold.append(done.get("metrics", {}))
            seconds.append(float(done.get("seconds", 0.0)))
            continue
        again = resume and any((fold_dir / "checkpoints").rglob("*.ckpt"))  # an interrupted fold goes on
        res = train_run(recipe, out=fold_dir, data=root, smoke=smoke, split_table=st, resume=again)
        per_fold.append(res.get("metrics", {}))
        seconds.append(round(time.time() - t, 1))
    _oof_predictions(root_dir, folds)
    pooled = _pooled(recipe, root_dir)
    summary = {"recipe": recipe.name, "folds": folds, "data": str(Path(root).resolve()),
               "items": int((base["fold"] >= 0).sum()), "groups": int(base.loc[base["fold"] >= 0, "group"].nunique()),
               "held_out_test_items": int((base["fold"] < 0).sum()),
               "interval": (f"value [95% interval]: with {MIN_FOLDS_T} or more folds the mean across folds and its "
                            "t-interval; with fewer, the pooled out-of-fold value and its group-bootstrap CI; "
                            "every interval within the metric's range ('interval' of each metric says which)"),
               "metrics": summarise_folds(per_fold, recipe.evaluation.ci_alpha, pooled),
               "pooled": pooled, "fold_seconds": seconds, "seconds": round(time.time() - t0, 1)}
    atomic_write_json(root_dir / "cv_summary.json", summary)
    lines = ["metric,value,ci_low,ci_high,interval,mean,sd," + ",".join(f"fold_{k}" for k in range(folds))]
    for name, m in summary["metrics"].items():
        lines.append(",".join([name, *(f"{m[c]:.6g}" for c in ("value", "ci_low", "ci_high")), f'"{m["interval"]}"',
                               *(f"{m[c]:.6g}" for c in ("mean", "sd")), *(f"{v:.6g}" for v in m["folds"])]))
    atomic_write_text(root_dir / "cv_summary.csv", "\n".join(lines) + "\n")
    return summary


def read_cv_summary(path: str | Path) -> dict[str, Any]:
    """``cv_summary.json`` of a cross-validation directory."""
    p = Path(path) / "cv_summary.json"
    if not p.is_file():
        raise ConfigError(f"'{path}' holds no cv_summary.json; run `medattn train RECIPE --folds K --out {path}`")
    return json.loads(p.read_text())


def ensemble_bundle(cv_dir: str | Path, out: str | Path) -> dict[str, Any]:
    """Save the K fold models of a classification cross-validation as one bundle.

    The bundle's model averages the members' probabilities (:mod:`medattn.models.ensemble`); its
    decision threshold(s) are chosen (Youden's J) on the out-of-fold predictions of the
    cross-validation, i.e. on items none of the fold models trained on or selected with. Per-fold
    calibration, conformal and out-of-distribution fits are not carried over (they belonged to
    single models).
    """

    from medattn.bundle import load_bundle, save_bundle
    from medattn.metrics.threshold import choose_threshold
    from medattn.models import create_model, model_spec

    cv = Path(cv_dir)
    summary = read_cv_summary(cv)
    preds = [load_bundle(cv / f"fold_{k}" / "bundle", device="cpu") for k in range(summary["folds"])]
    meta0 = dict(preds[0].meta)
    task = meta0["task"]
    if task == "segmentation":
        raise ConfigError(f"'{cv}' is a segmentation cross-validation; fold ensembles are built for classification")
    spec = model_spec(preds[0].model)
    model = create_model("ensemble", member=spec, n_members=len(preds),
                         activation="softmax" if task == "multiclass" else "sigmoid")
    for member, p in zip(model.members, preds, strict=True):  # type: ignore[attr-defined]
        member.load_state_dict(p.model.state_dict())
    from medattn.metrics.compare import load_predictions

    _, oof = load_predictions(cv / "test_predictions.csv")
    names = list(meta0["class_names"])
    keep = {k: meta0[k] for k in ("class_names", "input_size", "in_chans", "mean", "std", "recipe", "tta", "mpp",
                                  "training_data", "positive_view", "stain_normalization", "preparation")
            if k in meta0}
    meta: dict[str, Any] = {**keep, "task": task, "metrics": summary.get("pooled") or {},
                            "ensemble": {"members": len(preds), "cross_validation": str(cv.resolve()),
                                         "combination": "mean of probabilities",
                                         "thresholds_from": "out-of-fold predictions (Youden's J)"}}
    meta["training_data"] = {**meta0.get("training_data", {}), "path": summary["data"],
                             "cv_items": summary["items"], "cv_groups": summary["groups"]}
    if task == "binary":
        meta["threshold"] = choose_threshold(oof["label"].astype(int).to_numpy(),
                                             oof[[c for c in oof.columns if c.startswith("prob_")][0]].to_numpy(float))
    elif task == "multilabel":
        y = np.asarray([[int(c) for c in s] for s in oof["label"]])
        meta["thresholds"] = [choose_threshold(y[:, k], oof[f"prob_{n}"].to_numpy(float))
                              if 0 < y[:, k].sum() < len(y) else 0.5 for k, n in enumerate(names)]
    path = save_bundle(model, meta, out)
    return {"bundle": str(path), "members": len(preds), "threshold": meta.get("threshold"),
            "thresholds": meta.get("thresholds")}
