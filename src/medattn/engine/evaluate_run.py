"""Evaluate a trained model of any task on a run's test split (thresholds from validation).

Writes into the run directory (DESIGN.md "Conventions"):

- every task: ``metrics.json`` (each metric with a 95% bootstrap CI, patients resampled when
  known), ``test_predictions.csv`` and ``bad_files.txt`` when ``on_bad_file: skip`` left files out;
- classification: ``per_class_metrics.csv``, ``confusion_matrix.png``, ``roc_curve.png``,
  ``pr_curve.png`` and ``calibration.png`` (reliability diagram; ECE in ``metrics.json``, and the
  ECE after temperature scaling fitted on validation when ``evaluation.temperature_scaling``);
- segmentation: ``segmentation_metrics.csv`` (per image) and ``overlays/`` (TP/FP/FN).

The files are written by :mod:`medattn.report.eval_outputs`; this module only predicts and scores.
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

__all__ = ["evaluate_model", "predict_scores", "predict_masks", "item_file_names", "class_prevalence"]


@torch.no_grad()
def predict_scores(model: nn.Module, ds: Dataset, kind: str, batch_size: int = 64, tta: int = 1) -> np.ndarray:
    """Probabilities: ``N`` (binary), ``N×K`` softmax (multiclass) or sigmoid (multilabel/agcnn);
    ``tta`` > 1 averages that many rotated/mirrored views."""
    from medattn.infer.tta import dihedral_mean
    from medattn.progress import track

    model.eval()
    dev = next(model.parameters()).device
    from medattn.models.outputs import probabilities

    task = "multiclass" if kind == "multiclass" else "multilabel"
    out = []
    with track(f"predicting {len(ds)} items" + (f" ({tta}-view TTA)" if tta > 1 else ""), len(ds)) as tick:  # type: ignore[arg-type]
        for batch in DataLoader(ds, batch_size=batch_size, shuffle=False):
            p = dihedral_mean(lambda v: probabilities(model(v), task), batch[0].to(dev), views=tta)
            out.append(p.cpu().numpy())
            tick(len(p))
    p = np.concatenate(out)
    return p[:, 0] if kind == "binary" and p.ndim == 2 else p


def predict_masks(model: nn.Module, ds: Dataset, mean: tuple[float, ...] = (0.0, 0.0, 0.0),
                  std: tuple[float, ...] = (1.0, 1.0, 1.0), *, tile: int = 256, overlap: int = 64,
                  tta: bool = False, seg_target: str = "binary") -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per image ``(ground truth, class probabilities K×H×W, image)`` with padding removed.

    Probabilities come from overlapping ``tile``-pixel windows (:func:`sliding_window_probs`) of
    the ``seg_target`` head; ``image`` is the network input un-normalised with ``mean``/``std``
    (``uint8`` ``H×W×C``).
    """
    from medattn.infer.tiling import effective_overlap, sliding_window_probs
    from medattn.progress import track

    m_, s_ = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)
    out = []
    with track(f"predicting {len(ds)} images by {tile} px tiles", len(ds)) as tick:  # type: ignore[arg-type]
        for i in range(len(ds)):  # type: ignore[arg-type]
            x, m = ds[i][0], ds[i][1]
            gt = np.asarray(m).reshape(x.shape[-2:])
            rows, cols = np.nonzero(gt >= 0)
            h, w = (rows.max() + 1, cols.max() + 1) if len(rows) else gt.shape
            x = x[:, :h, :w]
            prob = sliding_window_probs(model, x, tile, effective_overlap(tile, overlap), tta=tta,
                                        seg_target=seg_target)
            c = x.shape[0]
            img = ((x.float().cpu() * s_[:c] + m_[:c]).clamp(0, 1) * 255 + 0.5).to(torch.uint8)
            out.append((gt[:h, :w], prob, img.permute(1, 2, 0).numpy().squeeze()))
            tick()
    return out


def _true_instances(gt: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return gt if gt.max() > 1 else ndimage.label(gt > 0)[0]


def _ci_block(res: dict[str, Any], groups: Any) -> dict[str, Any]:
    for v in res.values():
        v["resampled"] = "groups" if groups is not None else "items"
    return res


def _write_table(path: Path, per: dict[str, dict[str, Any]], first: str = "file") -> None:
    import csv
    import io

    keys: list[str] = []
    for row in per.values():
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([first, *keys])
    w.writerows([name, *(row.get(k, "") for k in keys)] for name, row in per.items())
    atomic_write_text(path, buf.getvalue())


def item_file_names(ids: list[str]) -> list[str]:
    """File-name-safe, unique names of items (the stem when stems are unique)."""
    stems = [Path(f.split("#")[0]).stem + (f"_{f.split('#')[1]}" if "#" in f else "") for f in ids]
    if len(set(stems)) < len(stems):
        stems = [Path(f).with_suffix("").as_posix() for f in ids]
    return ["".join(c if c.isalnum() or c in "-_.+" else "_" for c in s) for s in stems]


def _keep(ds: Dataset, ids: list[str]) -> np.ndarray:
    """Mask of items that were read (``on_bad_file: skip`` substitutes unreadable ones: drop them)."""
    bad = set(getattr(ds, "bad_files", None) or {})
    return np.asarray([f not in bad for f in ids], dtype=bool)


def _evaluate_segmentation(recipe: Recipe, model: nn.Module, ds: Any, valid: Any, out: Path, doc: dict[str, Any],
                           ids: list[str], groups: list[str] | None, gset: Any) -> dict[str, Any]:
    import pandas as pd

    from medattn.metrics.bootstrap import bootstrap_ci
    from medattn.metrics.seg_table import SEG_TABLE_COLUMNS
    from medattn.report.eval_outputs import write_segmentation_outputs

    ev = recipe.evaluation
    kw = {"tile": ev.tile_size or recipe.data.image_size, "overlap": ev.tile_overlap, "tta": ev.tta}
    head = recipe.task.seg_target
    preds = predict_masks(model, ds, recipe.data.mean, recipe.data.std, **kw, seg_target=head)
    keep = _keep(ds, ids)
    setting, chosen_on = ev.postprocess, "recipe"
    if setting is None:  # chosen on validation images, never on test
        from medattn.metrics.postprocess import choose_postprocess, default_postprocess

        val = [(p, _true_instances(g)) for g, p, _ in predict_masks(model, valid, recipe.data.mean,
                                                                     recipe.data.std, **kw, seg_target=head)]
        val = [(p, t) for p, t in val if t.max() > 0]
        if val:
            setting, val_aji, _ = choose_postprocess([p for p, _ in val], [t for _, t in val], seg_target=head)
            chosen_on = f"validation split ({len(val)} images, mean AJI {val_aji:.3f})"
        else:
            setting = default_postprocess(head, preds[0][1].shape[0])
            chosen_on = "default (no validation instances)"
    from medattn.metrics.postprocess import instances_from_output

    names = item_file_names(ids)
    items = [(names[i], _true_instances(gt), instances_from_output(prob, setting), img)
             for i, (gt, prob, img) in enumerate(preds) if keep[i]]
    doc.update(postprocess=setting, postprocess_chosen_on=chosen_on, tiles=kw)
    res_files = write_segmentation_outputs(out, items)
    table = pd.read_csv(res_files["csv"])
    keys = [c for c in SEG_TABLE_COLUMNS[1:] if c not in ("n_true", "n_pred")]
    arr = {k: table[k].to_numpy(dtype=np.float64) for k in keys}
    kept = [f for f, k in zip(ids, keep, strict=True) if k]
    gk = [g for g, k in zip(groups, keep, strict=True) if k] if gset is not None and groups else None
    res = bootstrap_ci(lambda i: {k: float(np.nanmean(arr[k][i])) for k in keys}, len(kept), gk,
                       max(ev.n_boot, 1), ev.ci_alpha, recipe.trainer.seed)
    doc.update(n_items=len(kept), metrics=_ci_block(res, gk), aggregation="mean over images",
               per_image="segmentation_metrics.csv", overlays=[Path(p).name for p in res_files["overlays"]])
    atomic_write_json(out / "metrics.json", doc)
    rows = {f: {"group": groups[ids.index(f)] if groups else "", **{k: r[k] for k in SEG_TABLE_COLUMNS[1:]}}
            for f, r in zip(kept, table.to_dict("records"), strict=True)}
    _write_table(out / "test_predictions.csv", rows)
    return {"metrics": res, "thresholds": None, "per_image": table.to_dict("records"), "postprocess": setting}


def _calibration(recipe: Recipe, kind: str, yv: np.ndarray | None, pv: np.ndarray | None, yt: np.ndarray,
                 pt: np.ndarray, out: Path, names: list[str], temperature: float | None = None) -> dict[str, Any]:
    """Reliability diagram and ECE; with ``temperature_scaling`` the temperature fitted on validation
    (or the given ``temperature``, a bundle's, when there is no validation split to fit it on)."""
    from medattn.metrics.calibration import (
        apply_temperature,
        expected_calibration_error,
        fit_temperature,
        logits_from_probs,
    )
    from medattn.report.eval_outputs import write_classification_figures
    from medattn.report.eval_plots import save_pr_curve, save_reliability
    from medattn.report.plots import save_roc

    bins = recipe.evaluation.calibration_bins
    flat = kind == "multilabel"  # every (image, finding) is one binary prediction
    cy, cp = (yt.ravel(), pt.ravel()) if flat else (yt, pt)
    info: dict[str, Any] = {"bins": bins, "ece": expected_calibration_error(cy, cp, bins),
                            "assessed": "positive-class probability" if kind != "multiclass" else "top label"}
    if flat:
        curves = {n: (yt[:, k], pt[:, k]) for k, n in enumerate(names) if 0 < yt[:, k].sum() < len(yt)}
        if curves:
            save_roc(curves, out / "roc_curve.png")
            save_pr_curve(curves, out / "pr_curve.png")
        save_reliability({"all findings": (cy, cp)}, out / "calibration.png", bins)
    else:
        write_classification_figures(out, yt, pt, names, n_bins=bins)
    if recipe.evaluation.temperature_scaling or temperature is not None:
        if temperature is None:
            vy, vp = (yv.ravel(), pv.ravel()) if flat else (yv, pv)
            temp, where = fit_temperature(logits_from_probs(vp), vy), "valid"
        else:
            temp, where = float(temperature), "the bundle's validation split"
        cal = apply_temperature(logits_from_probs(cp), temp)
        info.update(temperature=temp, temperature_fitted_on=where,
                    ece_temperature_scaled=expected_calibration_error(cy, cal, bins))
        save_reliability({"raw": (cy, cp), f"temperature {temp:.2f}": (cy, cal)}, out / "calibration.png", bins)
    return info


def evaluate_model(recipe: Recipe, model: nn.Module, data: Any, out_dir: str | Path, *, split: str = "test",
                   run_name: str = "", fixed: dict[str, Any] | None = None,
                   scorer: Any = None) -> dict[str, Any]:
    """Score ``model`` on ``split`` of ``data`` (a :class:`~medattn.engine.datamodule.RunData`).

    Thresholds (and the optional temperature) are chosen on the validation split only and applied
    unchanged. Items that ``on_bad_file: skip`` could not read are left out. Returns
    ``{"metrics", "thresholds", "y", "prob"}`` (segmentation: ``"per_image"`` instead of y/prob)
    plus ``"valid_calibration"`` (ECE on validation, temperature) for the bundle.

    ``fixed`` (external evaluation) holds what a bundle chose on its own validation split:
    ``threshold`` / ``thresholds`` / ``temperature`` (segmentation: the recipe's
    ``evaluation.postprocess``); nothing is chosen or fitted on ``data`` then, and the validation
    split of ``data`` is not used (it may be empty).

    ``scorer`` (external evaluation of a bundle): ``dataset → probabilities`` used instead of the
    model over the dataset's transform, e.g. the bundle's one inference entry, so an evaluated
    number is the number ``medattn predict`` and the server give for the same file (large images
    tiled by the bundle's rule, not squashed). Rows it cannot score are NaN and left out.
    """
    from medattn.engine.datamodule import write_bad_files
    from medattn.metrics.bootstrap import bootstrap_ci
    from medattn.metrics.calibration import expected_calibration_error
    from medattn.metrics.threshold import choose_threshold
    from medattn.report.eval_outputs import write_per_class_csv
    from medattn.report.plots import save_confusion_matrix

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
        result = _evaluate_segmentation(recipe, model, ds, data.valid, out, doc, ids, groups, gset)
        write_bad_files(data, out)
        return result
    views = 8 if ev.tta else 1
    if fixed is None:
        pv = predict_scores(model, data.valid, kind, tta=views)
        yv = np.asarray(data.valid.labels())
        kv = _keep(data.valid, data.valid.item_ids())
        pv, yv = pv[kv], yv[kv]
    else:
        pv = yv = None
    pt = scorer(ds) if scorer is not None else predict_scores(model, ds, kind, tta=views)
    yt = np.asarray(ds.labels())
    kt = _keep(ds, ids) & ~np.isnan(np.asarray(pt, np.float64).reshape(len(pt), -1)).any(1)
    pt, yt = pt[kt], yt[kt]
    ids = [f for f, k in zip(ids, kt, strict=True) if k]
    groups = [g for g, k in zip(groups, kt, strict=True) if k] if groups else groups
    gset = groups if groups is not None and len(set(groups)) < len(groups) else None
    doc["n_items"] = len(ids)
    bins = ev.calibration_bins

    def ece(i: np.ndarray) -> dict[str, float]:
        y, p = (yt[i].ravel(), pt[i].ravel()) if kind == "multilabel" else (yt[i], pt[i])
        return {"ece": expected_calibration_error(y, p, bins)}

    if kind == "binary":
        from medattn.metrics.classification import binary_confusion, binary_metrics
        from medattn.metrics.multiclass import multiclass_per_class

        if fixed is not None:
            thr = float(fixed["threshold"])
        else:
            thr = choose_threshold(yv, pv, "youden") if ev.threshold == "youden" else 0.5
        res = bootstrap_ci(lambda i: {**binary_metrics(yt[i], pt[i], thr), **ece(i)}, len(yt), gset, ev.n_boot,
                           ev.ci_alpha, seed)
        pred = (pt >= thr).astype(int)
        thresholds: Any = thr
        two = names if len(names) == 2 else ["negative", "positive"]
        write_per_class_csv(multiclass_per_class(yt, np.stack([1 - pt, pt], 1), two, pred), out / "per_class_metrics.csv")
        save_confusion_matrix(binary_confusion(yt, pt, thr), names, out / "confusion_matrix.png", model=recipe.name)
        prob_cols = [pt[:, None]]
        header = [f"prob_{names[1] if len(names) > 1 else 'positive'}"]
    elif kind == "multiclass":
        from medattn.metrics.multiclass import (
            multiclass_confusion,
            multiclass_metrics,
            multiclass_per_class,
        )
        from medattn.metrics.ordinal import ordinal_metrics

        view = positive_view(recipe, names, pt, yt, None if fixed is not None else (pv, yv),
                             None if fixed is None else fixed.get("positive_view"))

        def mc_fn(i: np.ndarray) -> dict[str, float]:  # ordered grades (task.ordinal) add kappa & co
            row = {**multiclass_metrics(yt[i], pt[i]), **ece(i), **(view["metrics"](i) if view else {})}
            return {**row, **ordinal_metrics(yt[i], pt[i], len(names))} if recipe.task.ordinal else row

        res = bootstrap_ci(mc_fn, len(yt), gset, ev.n_boot, ev.ci_alpha, seed)
        pred = pt.argmax(1)
        thresholds = None
        write_per_class_csv(multiclass_per_class(yt, pt, names), out / "per_class_metrics.csv")
        save_confusion_matrix(multiclass_confusion(yt, pred, len(names)), names, out / "confusion_matrix.png",
                              model=recipe.name)
        prob_cols, header = [pt], [f"prob_{n}" for n in names]
    else:
        from medattn.metrics.multilabel import multilabel_metrics, multilabel_per_label

        if fixed is not None:
            thr_list = [float(v) for v in fixed["thresholds"]]
        else:
            thr_list = [choose_threshold(yv[:, k], pv[:, k], "youden") if ev.threshold == "youden" and
                        0 < yv[:, k].sum() < len(yv) else 0.5 for k in range(yt.shape[1])]
        thr_arr = np.asarray(thr_list)
        res = bootstrap_ci(lambda i: {**multilabel_metrics(yt[i], pt[i], names, thr_arr), **ece(i)}, len(yt), gset,
                           ev.n_boot, ev.ci_alpha, seed)
        pred = (pt >= thr_arr).astype(int)
        thresholds = dict(zip(names, thr_list, strict=True))
        write_per_class_csv(multilabel_per_label(yt, pt, names, thr_arr), out / "per_class_metrics.csv")
        prob_cols, header = [pt], [f"prob_{n}" for n in names]
    if kind == "multiclass" and view:
        doc["positive_view"] = view["record"]
    doc["threshold" if kind == "binary" else "thresholds"] = thresholds  # one number for binary
    doc["threshold_method"] = ("argmax" if kind == "multiclass" else
                               f"{ev.threshold} on validation" + (" (the bundle's)" if fixed is not None else ""))
    doc["metrics"] = _ci_block(res, gset)
    doc["calibration"] = _calibration(recipe, kind, yv, pv, yt, pt, out, names,
                                      temperature=None if fixed is None else fixed.get("temperature"))
    doc["prevalence"] = class_prevalence(yt, kind, names)
    from medattn.engine.trust_fit import (
        evaluation_trust,  # issue 17: conformal sets (coverage, set size), AURC
    )

    trust = evaluation_trust(recipe, kind=kind, names=names, valid=(yv, pv), test=(yt, pt), groups=gset,
                             fixed=fixed, split=split, threshold=thresholds)
    doc.update(trust["metrics"])
    atomic_write_json(out / "metrics.json", doc)
    probs = np.concatenate(prob_cols, axis=1)
    lab = yt if yt.ndim == 1 else ["".join(str(int(v)) for v in r) for r in yt]
    prd = pred if pred.ndim == 1 else ["".join(str(int(v)) for v in r) for r in pred]
    rows = {}
    for i, fid in enumerate(ids):
        rows[fid] = {"group": groups[i] if groups else "", "true_label": lab[i] if yt.ndim > 1 else int(lab[i]),
                     **{h: f"{v:.6f}" for h, v in zip(header, probs[i], strict=True)},
                     "predicted_label": prd[i] if pred.ndim > 1 else int(prd[i])}
    _write_table(out / "test_predictions.csv", rows)
    write_bad_files(data, out)
    result = {"metrics": res, "thresholds": thresholds, "y": yt, "prob": pt, "prevalence": doc["prevalence"],
              "conformal": trust["conformal"]}
    if kind == "multiclass" and view:
        result["positive_view"] = view["record"]
    if fixed is None:
        flat = kind == "multilabel"
        vy, vp = (yv.ravel(), pv.ravel()) if flat else (yv, pv)
        result["valid_calibration"] = {"ece": expected_calibration_error(vy, vp, bins), "bins": bins,
                                       "n_items": int(len(yv)),
                                       **({"temperature": doc["calibration"]["temperature"]}
                                          if "temperature" in doc["calibration"] else {})}
    return result


def positive_view(recipe: Recipe, names: list[str], pt: np.ndarray, yt: np.ndarray,
                  valid: tuple[np.ndarray, np.ndarray] | None, stored: dict[str, Any] | None) -> dict[str, Any] | None:
    """The 2-class view of a multiclass task (``evaluation.positive_classes``, e.g. Herlev's
    abnormal cells): the summed probability of those classes, thresholded at Youden's J on
    validation (or the bundle's ``stored`` threshold), scored as sensitivity, specificity,
    balanced accuracy and AUROC with the same bootstrap as the other metrics. With
    ``evaluation.screening_sensitivity`` a second, named ``screening`` operating point (the highest
    threshold whose validation sensitivity reaches the target) is stored and scored beside it
    (``<name>_screening_sensitivity`` / ``_specificity``)."""
    from medattn.errors import ConfigError
    from medattn.metrics.classification import binary_metrics
    from medattn.metrics.threshold import choose_threshold

    ev = recipe.evaluation
    classes = stored["classes"] if stored else ev.positive_classes
    if not classes:
        return None
    unknown = [c for c in classes if c not in names]
    if unknown:
        raise ConfigError(f"field 'evaluation.positive_classes': {unknown} are not classes of the data {names}")
    name = stored["name"] if stored else ev.positive_name
    pos = np.asarray([n in classes for n in names])
    p_pos, y_pos = pt[:, pos].sum(1), pos[yt].astype(int)
    points: dict[str, Any] = {}
    if stored:
        thr = float(stored["threshold"])
        points = dict(stored.get("operating_points") or {})
    else:
        pv, yv = valid  # type: ignore[misc]
        yv_pos, pv_pos = pos[yv].astype(int), pv[:, pos].sum(1)
        both = 0 < yv_pos.sum() < len(yv_pos)
        thr = choose_threshold(yv_pos, pv_pos, "youden") if both else 0.5
        target = ev.screening_sensitivity
        if target is not None and both:
            t = choose_threshold(yv_pos, pv_pos, "sensitivity", target)
            m = binary_metrics(yv_pos, pv_pos, t)
            points["screening"] = {"threshold": float(t), "target_sensitivity": float(target),
                                   "chosen_on": f"validation ({len(yv_pos)} items, {int(yv_pos.sum())} {name})",
                                   "valid_sensitivity": float(m["recall"]), "valid_specificity": float(m["specificity"])}

    def metrics(i: np.ndarray) -> dict[str, float]:
        m = binary_metrics(y_pos[i], p_pos[i], thr)
        row = {f"{name}_sensitivity": m["recall"], f"{name}_specificity": m["specificity"],
               f"{name}_balanced_accuracy": m["balanced_accuracy"], f"{name}_auroc": m["auroc"]}
        for op, rec in points.items():
            s = binary_metrics(y_pos[i], p_pos[i], float(rec["threshold"]))
            row.update({f"{name}_{op}_sensitivity": s["recall"], f"{name}_{op}_specificity": s["specificity"]})
        return row

    record = {"name": name, "classes": list(classes), "threshold": float(thr),
              "threshold_method": "youden on validation" if not stored
              else "the bundle's (youden on its validation split)"}
    if points:
        record["operating_points"] = points
    return {"metrics": metrics, "record": record}


def class_prevalence(y: np.ndarray, kind: str, names: list[str]) -> dict[str, float]:
    """Share of items of each class (multilabel: of each finding) in labels ``y``."""
    y = np.asarray(y)
    if len(y) == 0:
        return {}
    if kind == "multilabel":
        return {n: float(y[:, k].mean()) for k, n in enumerate(names)}
    two = names if len(names) == 2 or kind != "binary" else ["negative", "positive"]
    return {n: float(np.mean(y == k)) for k, n in enumerate(two)}
