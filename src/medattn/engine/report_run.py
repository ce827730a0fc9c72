"""The bundle, the Grad-CAM gallery (``cams/``) and the self-contained ``report.html`` of a run.

``report.html`` sections (``id``): ``data`` (splits, groups, leakage audit, bad files),
``overview`` (dataset overview), ``training`` (curves), ``metrics`` (test metrics with CIs),
``per-class``, ``calibration``, ``figures``, ``explanations`` (``cams/``), ``reproducibility``
(recipe, versions, seeds, split hash). Every figure is embedded; no external assets.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import logging
from pathlib import Path
from typing import Any

from torch import nn

from medattn.engine.config import Recipe, recipe_to_yaml

__all__ = ["write_bundle", "write_report", "write_cams", "split_sha256", "BUNDLE_TASKS", "CAMS_DIR"]

log = logging.getLogger(__name__)

BUNDLE_TASKS = {"binary": "binary", "multiclass": "multiclass", "multilabel": "multilabel",
                "agcnn": "multilabel", "segmentation": "segmentation"}
CAMS_DIR = "cams"
_GALLERY_MAX = 12
_SMOKE_CAMS = 2


def split_sha256(run_dir: str | Path) -> str | None:
    """SHA-256 of the run's ``split.csv`` (the data manifest the run trained and tested on)."""
    p = Path(run_dir) / "split.csv"
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None


def write_bundle(recipe: Recipe, model: nn.Module, data: Any, ev: dict[str, Any], path: Path,
                 split_hash: str) -> Path:
    """Save the best weights with their preprocessing, class names, thresholds and metrics."""
    from medattn.bundle import save_bundle

    meta: dict[str, Any] = {
        "task": BUNDLE_TASKS[recipe.task.type], "class_names": data.class_names,
        "input_size": recipe.data.image_size, "in_chans": recipe.data.in_chans,
        "mean": list(recipe.data.mean), "std": list(recipe.data.std),
        "metrics": {k: v for k, v in ev["metrics"].items()}, "recipe": recipe.model_dump(mode="json"),
        "split_hash": split_hash, "tta": recipe.evaluation.tta,
    }
    if recipe.data.stain_normalize != "none":  # numbers fitted at training start (medattn.data.stain)
        meta["stain_normalization"] = recipe.data.stain_fitted
    from medattn.engine.datamodule import preparation_of

    meta["preparation"] = preparation_of(recipe).as_meta()  # every deterministic step, for every door
    meta["training_data"] = training_data_record(recipe, data)
    if ev.get("positive_view"):
        meta["positive_view"] = ev["positive_view"]
    if ev.get("valid_calibration"):
        meta["validation_calibration"] = ev["valid_calibration"]
        if "temperature" in ev["valid_calibration"]:
            meta["temperature"] = ev["valid_calibration"]["temperature"]
    th = ev.get("thresholds")
    if isinstance(th, float):
        meta["threshold"] = th
    elif isinstance(th, dict):
        meta["thresholds"] = [th[n] for n in data.class_names]
    from medattn.engine.trust_fit import (
        bundle_trust,  # issue 17: conformal, input contract, OOD model, synthetic flag
    )

    meta.update(bundle_trust(recipe, model, data, ev, path))
    if ev.get("postprocess"):  # segmentation: instance setting chosen on validation, reused by evaluate
        meta["postprocess"] = ev["postprocess"]
        meta["recipe"]["evaluation"]["postprocess"] = ev["postprocess"]
    return save_bundle(model, meta, path)




def training_data_record(recipe: Recipe, data: Any) -> dict[str, Any]:
    """What the bundle was trained and validated on: data path, format, items and groups per split,
    class prevalence of the training split (external evaluation compares against these)."""
    import numpy as np

    from medattn.engine.evaluate_run import class_prevalence

    table = data.table
    splits = {}
    for name in ("train", "valid", "test"):
        rows = table[table["split"] == name]
        splits[name] = {"items": int(len(rows)), "groups": int(rows["group"].nunique()) if len(rows) else 0}
    rec: dict[str, Any] = {"path": str(Path(data.root).resolve()), "format": data.fmt, "splits": splits}
    kind = "multilabel" if recipe.task.type == "agcnn" else recipe.task.type
    if kind != "segmentation":
        y = np.asarray(getattr(data.train, "base", data.train).labels())
        rec["prevalence_train"] = class_prevalence(y, kind, list(data.class_names))
    return rec


def _pick_items(split_csv: Path, n: int, split: str = "test") -> list[str]:
    """Up to ``n`` items of ``split``, taken round-robin over the labels (every class shown)."""
    import pandas as pd

    t = pd.read_csv(split_csv, dtype=str, keep_default_na=False)
    if not (t["split"] == split).any():  # a final model (no test split) shows validation images
        split = "valid"
    t = t[t["split"] == split]
    by_label = [list(g["file"]) for _, g in t.groupby("label", sort=True)] if "label" in t else [list(t["file"])]
    out: list[str] = []
    while len(out) < n and any(by_label):
        for files in by_label:
            if files and len(out) < n:
                out.append(files.pop(0))
    return out


def write_cams(recipe: Recipe, run_dir: str | Path, n: int | None = None, method: str = "gradcam") -> dict[str, Any]:
    """Grad-CAM overlays of a few test images in ``run_dir/cams/`` through the run's own bundle.

    Smoke runs (``run.json``) explain at most two images. Files are named
    ``<input>__<predicted class>__<method>.png`` (see
    :func:`medattn.explain.write_explanations`, which also writes galleries and ``scores.csv``).

    Returns:
        ``{"maps": count, "images": count, "files": [...]}`` or ``{"skipped": reason}`` (segmentation runs, ``n == 0``).
    """
    import dataclasses

    from medattn.bundle import load_bundle
    from medattn.data.formats.registry import read_item
    from medattn.engine.evaluate_run import item_file_names
    from medattn.explain import explain, write_explanations

    run = Path(run_dir)
    n = recipe.evaluation.n_cams if n is None else n
    if recipe.task.type == "segmentation":
        return {"skipped": "segmentation run: see the TP/FP/FN overlays"}
    if n <= 0:
        return {"skipped": "evaluation.n_cams is 0"}
    info = json.loads((run / "run.json").read_text())
    if info.get("smoke"):  # --smoke promises seconds: two images show the wiring
        n = min(n, _SMOKE_CAMS)
    files = _pick_items(run / "split.csv", n)
    images = [read_item(info["data"], f) for f in files]
    results = explain(load_bundle(run / "bundle"), images, method=method, target="top")
    names = item_file_names(files)
    results = [dataclasses.replace(e, source=names[e.item]) for e in results]
    write_explanations(results, run / CAMS_DIR)
    return {"maps": len(results), "images": len(files), "files": sorted(p.name for p in (run / CAMS_DIR).glob("*__*.png"))}


def _img(path: Path, mime: str = "image/png") -> str:
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:{mime};base64,{data}">'


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def _data_section(run_dir: Path) -> str:
    from medattn.report.html import table_html

    audit = _read_json(run_dir / "audit.json")
    classes = (_read_json(run_dir / "run.json") or {}).get("classes") or []
    parts = []
    if audit is None:
        parts.append('<p class="note">no audit.json in this run (the data audit did not run).</p>')
    else:
        rows = [[s, v["items"], v["groups"], ", ".join(f"{_class_name(k, classes)}: {c}" for k, c in v.get("classes", {}).items())]
                for s, v in audit.get("splits", {}).items()]
        parts.append(table_html(["split", "items", "groups (patients)", "items per class"], rows))
        lk = audit.get("leakage", {})
        verdict = "PASSED (no leakage)" if audit.get("passed") else "LEAKAGE FOUND"
        parts.append(table_html(["check", "count"], [
            ["groups in more than one split", lk.get("group_overlap", 0)],
            ["identical images across splits", lk.get("exact_cross_split", 0)],
            ["near-identical images across splits", lk.get("near_cross_split", 0)],
            ["duplicates within a split", audit.get("within_split_duplicates", 0)],
            ["unreadable files (audit)", len(audit.get("bad_files", []))],
        ]))
        parts.append(f"<p><b>Leakage audit: {verdict}</b> ({audit.get('n_items')} items; details in audit.json)</p>")
    bad = run_dir / "bad_files.txt"
    if bad.is_file():
        lines = bad.read_text().splitlines()[1:]
        parts.append(f"<p>{len(lines)} file(s) left out by <code>on_bad_file: skip</code> (bad_files.txt):</p>"
                     f"<pre>{html.escape(chr(10).join(lines[:50]))}</pre>")
    return "".join(parts)


def _class_name(label: str, classes: list[str]) -> str:
    return classes[int(label)] if label.isdigit() and int(label) < len(classes) else label


def _metrics_sections(rep: Any, run_dir: Path) -> None:
    import csv

    from medattn.report.sections import metrics_ci_table, per_class_table

    doc = _read_json(run_dir / "metrics.json")
    if doc is not None:
        level = round(100 * (1 - _ci_alpha(doc)))
        note = (f'<p class="note">{doc["split"]} split, {doc["n_items"]} items; {doc["ci"]} '
                f'({doc.get("n_boot")} resamples, {next(iter(doc["metrics"].values()), {}).get("resampled", "items")} '
                f'resampled); thresholds chosen on validation only ({doc.get("threshold_method", "n/a")}).</p>')
        rep.add("metrics", "Test metrics with confidence intervals", note + metrics_ci_table(doc["metrics"], level))
    pc = run_dir / "per_class_metrics.csv"
    if pc.is_file():
        rows = list(csv.DictReader(pc.read_text().splitlines()))
        per = {r.pop("class"): {k: _num(v) for k, v in r.items()} for r in rows}
        rep.add("per-class", "Per-class metrics (test)", per_class_table(per))
    seg = run_dir / "segmentation_metrics.csv"
    if seg.is_file():
        rows = list(csv.DictReader(seg.read_text().splitlines()))
        per = {r.pop("image"): {k: _num(v) for k, v in r.items()} for r in rows[:40]}
        rep.add("per-image", f"Per-image segmentation metrics (first {len(per)} of {len(rows)})", per_class_table(per))
    cal = (doc or {}).get("calibration")
    if cal is not None:
        text = f"ECE ({cal['bins']} bins, {cal['assessed']}): {cal['ece']:.4f}"
        if "temperature" in cal:
            text += (f"; temperature scaling fitted on validation: T = {cal['temperature']:.3f}, "
                     f"ECE after scaling {cal['ece_temperature_scaled']:.4f}")
        rep.add("calibration", "Calibration", f"<p>{html.escape(text)}</p>" + _img(run_dir / "calibration.png"))


def _ci_alpha(doc: dict[str, Any]) -> float:
    try:
        return 1 - float(str(doc.get("ci", "95%")).split("%")[0]) / 100
    except ValueError:
        return 0.05


def _num(v: str) -> object:
    try:
        return float(v)
    except ValueError:
        return v


def _repro_section(recipe: Recipe, run_dir: Path) -> str:
    import platform

    import lightning
    import torch

    import medattn
    from medattn.report.html import table_html

    bundle = _read_json(run_dir / "bundle" / "bundle.json") or {}
    run = _read_json(run_dir / "run.json") or {}
    rows = [["medattn", medattn.__version__], ["torch", torch.__version__], ["lightning", lightning.__version__],
            ["python", platform.python_version()], ["seed (trainer)", recipe.trainer.seed],
            ["seed (split)", recipe.data.split.seed], ["deterministic", recipe.trainer.deterministic],
            ["split.csv sha256", split_sha256(run_dir) or "n/a"],
            ["bundle split_hash", bundle.get("split_hash", "n/a")],
            ["data", run.get("data", "n/a")], ["smoke", run.get("smoke", False)]]
    return (table_html(["item", "value"], rows)
            + f"<p>Resolved recipe (recipe.yaml):</p><pre>{html.escape(recipe_to_yaml(recipe))}</pre>")


def write_report(recipe: Recipe, run_dir: Path, summary: dict[str, Any], info: dict[str, Any]) -> Path:
    """Write ``cams/`` (classification) and ``report.html`` with every section of the run."""
    from medattn.overview import overview_section  # dataset overview (counts, montage, statistics)
    from medattn.report.html import Report, table_html

    run_dir = Path(run_dir)
    try:
        cams = write_cams(recipe, run_dir)
    except Exception as exc:  # noqa: BLE001 - explanations are an optional part of a finished run
        log.warning("Grad-CAM gallery of %s failed: %s", run_dir, exc)
        cams = {"skipped": f"explanations failed: {exc}"}
    rep = Report(f"medattn run: {recipe.name}")
    rep.add("data", "Data and leakage audit", _data_section(run_dir))
    rep.add(*overview_section(run_dir))
    stages = [[k, f"{v.get('best_val')}" if v.get("best_val") is None else f"{v['best_val']:.4f}", v.get("epochs")]
              for k, v in summary["stages"].items()]
    rep.add("training", "Training", table_html(["stage", f"best {recipe.default_monitor()}", "epochs"], stages)
            + _img(run_dir / "training_history.png"))
    _metrics_sections(rep, run_dir)
    from medattn.report.trust_plots import (
        trust_section,  # issue 17: risk–coverage (AURC), conformal sets
    )

    if (sec := trust_section(run_dir)) is not None:
        rep.add(*sec)
    figs = "".join(_img(run_dir / f) for f in ("confusion_matrix.png", "roc_curve.png", "pr_curve.png"))
    figs += _img(run_dir / "progress.gif", "image/gif")
    figs += "".join(_img(p) for p in sorted((run_dir / "overlays").glob("*.png"))[:_GALLERY_MAX])
    if figs:
        rep.add("figures", "Figures", f'<div class="gallery">{figs}</div>')
    if "skipped" in cams:
        body = f'<p class="note">{html.escape(str(cams["skipped"]))}</p>'
    else:
        body = (f'<p class="note">Grad-CAM of the predicted class(es): {cams["maps"]} map(s) of {cams["images"]} '
                f'test image(s), files in {CAMS_DIR}/ (first {_GALLERY_MAX} shown).</p><div class="gallery">'
                + "".join(_img(run_dir / CAMS_DIR / f) for f in cams["files"][:_GALLERY_MAX]) + "</div>")
    rep.add("explanations", "Explanations", body)
    rep.add("reproducibility", "Reproducibility", _repro_section(recipe, run_dir))
    return rep.write(run_dir / "report.html")
