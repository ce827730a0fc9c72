"""``medattn train``: one recipe → one run directory.

``runs/<name>/`` holds ``recipe.yaml`` (resolved), ``run.json``, ``split.csv``, ``audit.json``
(when the data audit is available), ``training_history.csv/.png``, ``checkpoints/`` (``best.ckpt``
and ``last.ckpt``, written atomically), ``bundle/``, ``metrics.json``, ``per_class_metrics.csv``,
``test_predictions.csv``, figures, ``progress.gif`` (segmentation) and ``report.html``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import yaml

from medattn.engine.config import (
    Recipe,
    apply_overrides,
    find_recipe,
    override_recipe,
    parse_overrides,
    recipe_from_dict,
    recipe_to_yaml,
)
from medattn.errors import ConfigError
from medattn.io import atomic_write_json, atomic_write_text, ensure_dir
from medattn.runtime import tune_allocator

__all__ = ["train_run", "resolve_recipe", "is_rank_zero", "run_stages"]


def is_rank_zero() -> bool:
    """True unless this process is a non-zero rank of a distributed launch."""
    return all(os.environ.get(v, "0") == "0" for v in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def resolve_recipe(ref: str | Path, overrides: list[str] | dict[str, Any] | None = None, smoke: bool = False) -> Recipe:
    """Load a recipe; with ``smoke`` shrink it first, then apply the user's ``--set`` overrides."""
    from medattn.engine.smoke import smoke_overrides

    path = find_recipe(ref)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"recipe '{path}': not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"recipe '{path}': expected a mapping of sections")
    if smoke:
        raw = apply_overrides(raw, smoke_overrides(raw))
    ov = parse_overrides(overrides) if isinstance(overrides, list) else (overrides or {})
    return override_recipe(raw, ov, source=f"recipe '{path.name}'")


def _data_root(recipe: Recipe, data: str | Path | None, run_dir: Path, smoke: bool) -> Path:
    if data is not None:
        return Path(data)
    if recipe.data.root:
        return Path(recipe.data.root)
    if smoke:
        from medattn.engine.smoke import write_smoke_data

        return write_smoke_data(recipe.data.format, run_dir / "smoke_data", seed=recipe.trainer.seed,
                                class_names=recipe.data.class_names, task=recipe.task.type)
    raise ConfigError("field 'data.root': no data path; pass --data PATH (or --smoke for synthetic data)")


def _maybe_audit(data: Any, run_dir: Path) -> None:
    """Run the leakage audit on the run's split table and record it as ``audit.json``.

    A failed audit (patients or copies of images in more than one split) is recorded and
    reported as a warning; ``medattn audit --strict`` is the gate that refuses such data.
    """
    from medattn.data.audit import audit

    result = audit(data.root, data.table)
    atomic_write_json(run_dir / "audit.json", result)
    if not result.get("passed", True):
        import warnings

        warnings.warn(
            f"data audit found leakage across splits ({result.get('leakage')}); see {run_dir / 'audit.json'}",
            stacklevel=2,
        )


def run_stages(recipe: Recipe) -> list[str | None]:
    """AG-CNN stages to train (``None`` = the single stage of other tasks)."""
    if recipe.task.type != "agcnn":
        return [None]
    return ["global", "local", "fusion"] if recipe.task.stage == "all" else [recipe.task.stage]


def _fit_all(recipe: Recipe, model: Any, data: Any, run_dir: Path, resume: bool,
             max_epochs: int | None = None) -> tuple[Any, dict[str, Any]]:
    from medattn.engine.fit import build_task, fit_stage, load_best_weights

    info: dict[str, Any] = {"stages": {}}
    result = None
    for stage in run_stages(recipe):
        ckpt_dir = run_dir / "checkpoints" / (f"stage_{stage}" if stage else "")
        done = ckpt_dir / "DONE.json"
        if stage and resume and done.is_file():  # finished before the interruption: reuse its best
            model = load_best_weights(model, ckpt_dir / "best.ckpt")
            info["stages"][stage] = json.loads(done.read_text())
            continue
        cbs = []
        if recipe.task.type == "segmentation" and recipe.task.gif_every and is_rank_zero():
            from medattn.engine.callbacks import SegProgressGIF

            x, m = data.valid[0][0], data.valid[0][1]
            cbs.append(SegProgressGIF(x, m, run_dir, recipe.data.mean, recipe.data.std, recipe.task.gif_every))
        task = build_task(recipe, model, data, stage)
        hist = f"training_history_{stage}.csv" if stage else "training_history.csv"
        result = fit_stage(recipe, task, data, run_dir, ckpt_dir, extra_callbacks=cbs, resume=resume,
                           max_epochs=max_epochs, history_name=hist)
        model = result.model
        summary = {"best_val": result.best_score, "epochs": result.epochs_run, "history": result.history}
        info["stages"][stage or "main"] = summary
        if stage and result.is_global_zero:
            atomic_write_json(done, summary)
    info["is_global_zero"] = result.is_global_zero if result is not None else True
    return model, info


def train_run(recipe: Recipe | str | Path, *, out: str | Path, data: str | Path | None = None,
              smoke: bool = False, overrides: list[str] | None = None, resume: bool = False,
              evaluate: bool = True, split_table: Any | None = None) -> dict[str, Any]:
    """Train a recipe into ``out`` (or continue the interrupted run ``out`` when ``resume``).

    ``split_table`` fixes the ``file, split, group, label`` rows (cross-validation folds); by
    default the recipe's ``data.split`` makes them (a resumed run re-reads its ``split.csv``).

    Returns a summary: run directory, best validation score, test metrics (point values).
    """
    from medattn.engine.lightning_quiet import quiet_lightning

    run_dir = Path(out)
    if resume:
        if not (run_dir / "recipe.yaml").is_file():
            raise ConfigError(f"--resume '{run_dir}': no recipe.yaml there; is it a medattn run directory?")
        recipe = recipe_from_dict(yaml.safe_load((run_dir / "recipe.yaml").read_text()), f"recipe '{run_dir}/recipe.yaml'")
        meta = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
        smoke = bool(meta.get("smoke", smoke))
        data = data or meta.get("data")
    else:
        if not isinstance(recipe, Recipe):
            recipe = resolve_recipe(recipe, overrides, smoke)
        if (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").rglob("*.ckpt")) and is_rank_zero():
            raise ConfigError(f"--out '{run_dir}' already holds a run; continue it with --resume {run_dir} "
                              "or choose another --out")
    quiet_lightning()
    tune_allocator()
    import lightning as L

    from medattn.progress import reporting

    L.seed_everything(recipe.trainer.seed, workers=True, verbose=False)
    with reporting(recipe.trainer.progress and is_rank_zero()):  # phase lines outside the epochs
        return _train(recipe, run_dir, data, smoke, resume, evaluate, split_table)


def _train(recipe: Recipe, run_dir: Path, data: str | Path | None, smoke: bool, resume: bool, evaluate: bool,
           split_table: Any | None) -> dict[str, Any]:
    """The body of :func:`train_run` once the recipe is resolved: data, fit, evaluation, outputs."""
    from medattn.progress import step

    t0 = time.time()
    root = _data_root(recipe, data, ensure_dir(run_dir), smoke)
    from medattn.data.splits import read_split_csv, write_split_csv
    from medattn.engine.datamodule import build_data

    split_csv = run_dir / "split.csv"
    if resume and split_csv.is_file():
        split_table = read_split_csv(split_csv)
    rd = build_data(recipe, root, split_table)
    if is_rank_zero() and not resume:
        atomic_write_text(run_dir / "recipe.yaml", recipe_to_yaml(recipe))
        write_split_csv(rd.table, split_csv)
        from medattn.engine.fit import resolve_precision

        atomic_write_json(run_dir / "run.json", {"recipe": recipe.name, "data": str(Path(root).resolve()),
                                                 "format": rd.fmt, "smoke": smoke, "classes": rd.class_names,
                                                 "precision": resolve_precision(recipe.trainer.precision,
                                                                                recipe.trainer.accelerator)})
        _maybe_audit(rd, run_dir)
    from medattn.engine.fit import build_model

    model, info = _fit_all(recipe, build_model(recipe, rd.class_names), rd, run_dir, resume)
    summary: dict[str, Any] = {"run": str(run_dir), "recipe": recipe.name, "classes": rd.class_names,
                               "stages": {k: {kk: vv for kk, vv in v.items() if kk != "history"}
                                          for k, v in info["stages"].items()}}
    if not info["is_global_zero"] or not is_rank_zero():
        return summary
    _history_plots(recipe, run_dir, info)
    if evaluate:
        from medattn.engine.evaluate_run import evaluate_model
        from medattn.engine.report_run import write_bundle, write_report

        has_test = bool((rd.table["split"] == "test").any())
        split = "test" if has_test else "valid"
        with step(f"final evaluation on the {split} split ({int((rd.table['split'] == split).sum())} items"
                  + (", 8-view test-time augmentation)" if recipe.evaluation.tta else ")")):
            ev = evaluate_model(recipe, model, rd, run_dir, split=split)
        if not has_test:
            note_no_test(run_dir / "metrics.json")
        split_hash = hashlib.sha256(split_csv.read_bytes()).hexdigest()
        with step("bundle: weights, input contract, out-of-distribution model"):
            write_bundle(recipe, model, rd, ev, run_dir / "bundle", split_hash)
        summary["metrics"] = {k: v["value"] for k, v in ev["metrics"].items()}
        summary["evaluated_on"] = split
        summary["seconds"] = round(time.time() - t0, 1)
        with step("report.html" + (" and Grad-CAMs" if recipe.task.type != "segmentation" else "")):
            write_report(recipe, run_dir, summary, info)
        atomic_write_json(run_dir / "summary.json", summary)
    return summary


def note_no_test(path: Path) -> None:
    """Mark ``metrics.json`` of a run without a test split (``data.split.test_fraction: 0``)."""
    doc = json.loads(path.read_text())
    doc["note"] = ("no test split (data.split.test_fraction 0): these metrics are on the validation split "
                   "that chose the checkpoint and thresholds, so they are optimistic; score the bundle on "
                   "data it never saw with `medattn evaluate BUNDLE --data NEW`")
    atomic_write_json(path, doc)


def _history_plots(recipe: Recipe, run_dir: Path, info: dict[str, Any]) -> None:
    from medattn.report.plots import save_history

    rows: list[dict[str, Any]] = []
    for stage, s in info["stages"].items():
        rows += [{**r, "stage": stage} for r in s.get("history", [])]
    if len(info["stages"]) > 1 and rows:  # AG-CNN: one combined table next to the per-stage ones
        keys: list[str] = ["stage"]
        for r in rows:
            keys += [k for k in r if k not in keys]
        lines = [",".join(keys)] + [",".join(str(r.get(k, "")) for k in keys) for r in rows]
        atomic_write_text(run_dir / "training_history.csv", "\n".join(lines) + "\n")
    if rows:
        save_history(rows, run_dir / "training_history.png", recipe.name, monitor=recipe.default_monitor())
