"""The bundle and the self-contained ``report.html`` of a finished run."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from torch import nn

from medattn.engine.config import Recipe, recipe_to_yaml

__all__ = ["write_bundle", "write_report", "BUNDLE_TASKS"]

BUNDLE_TASKS = {"binary": "binary", "multiclass": "multiclass", "multilabel": "multilabel",
                "agcnn": "multilabel", "segmentation": "segmentation"}


def write_bundle(recipe: Recipe, model: nn.Module, data: Any, ev: dict[str, Any], path: Path,
                 split_hash: str) -> Path:
    """Save the best weights with their preprocessing, class names, thresholds and metrics."""
    from medattn.bundle import save_bundle

    meta: dict[str, Any] = {
        "task": BUNDLE_TASKS[recipe.task.type], "class_names": data.class_names,
        "input_size": recipe.data.image_size, "in_chans": recipe.data.in_chans,
        "mean": list(recipe.data.mean), "std": list(recipe.data.std),
        "metrics": {k: v for k, v in ev["metrics"].items()}, "recipe": recipe.model_dump(mode="json"),
        "split_hash": split_hash,
    }
    th = ev.get("thresholds")
    if isinstance(th, float):
        meta["threshold"] = th
    elif isinstance(th, dict):
        meta["thresholds"] = [th[n] for n in data.class_names]
    return save_bundle(model, meta, path)


def _img(path: Path, mime: str = "image/png") -> str:
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:{mime};base64,{data}">'


def write_report(recipe: Recipe, run_dir: Path, summary: dict[str, Any], info: dict[str, Any]) -> Path:
    """``report.html``: test metrics with CIs, validation history, figures and the recipe."""
    import json

    from medattn.report.html import Report, table_html

    rep = Report(f"medattn run: {recipe.name}")
    stages = [[k, f"{v.get('best_val')}" if v.get("best_val") is None else f"{v['best_val']:.4f}", v.get("epochs")]
              for k, v in summary["stages"].items()]
    rep.add("training", "Training", table_html(["stage", f"best {recipe.default_monitor()}", "epochs"], stages)
            + _img(run_dir / "training_history.png"))
    mpath = run_dir / "metrics.json"
    if mpath.is_file():
        doc = json.loads(mpath.read_text())
        rows = [[k, f"{v['value']:.4f}", f"{v['ci_low']:.4f}", f"{v['ci_high']:.4f}"]
                for k, v in doc["metrics"].items() if isinstance(v, dict) and v.get("value") is not None]
        note = (f'<p class="note">{doc["split"]} split, {doc["n_items"]} items; {doc["ci"]} '
                f'({doc.get("n_boot")} resamples); thresholds chosen on validation only.</p>')
        rep.add("metrics", "Test metrics", note + table_html(["metric", "value", "CI low", "CI high"], rows))
    figs = "".join(_img(run_dir / f) for f in ("confusion_matrix.png", "roc_curve.png"))
    figs += _img(run_dir / "progress.gif", "image/gif")
    if figs:
        rep.add("figures", "Figures", f'<div class="gallery">{figs}</div>')
    from medattn.overview import overview_section  # dataset overview (counts, montage, statistics)

    rep.add(*overview_section(run_dir))
    rep.add("recipe", "Recipe (resolved)", f"<pre>{html.escape(recipe_to_yaml(recipe))}</pre>")
    return rep.write(run_dir / "report.html")
