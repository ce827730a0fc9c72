"""``medattn evaluate RUN_OR_BUNDLE``: re-score a trained model on a split of (new) data.

A run directory brings its recipe, ``split.csv`` and bundle; a bare bundle brings the recipe it
was trained with (``bundle.json``). Thresholds stay the ones chosen on validation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medattn.errors import BundleError, ConfigError

__all__ = ["evaluate_path"]


def evaluate_path(path: str | Path, *, data: str | Path | None = None, split: str = "test",
                  out: str | Path | None = None, split_csv: str | Path | None = None,
                  external: bool | None = None, on_bad_file: str | None = None) -> dict[str, Any]:
    """Evaluate a run directory or bundle; returns metrics, the output folder and whether the
    evaluation was external.

    Internal (the data the model was trained on): the run's own split, or ``split_csv`` (a
    ``split.csv`` with ``file, split, group, label``, e.g. a published split), and ``split`` of it
    is scored. External (``data`` differs from the training data, or ``external=True``): every item
    of ``data`` is scored (``split_csv`` may still select its ``test`` rows) with the bundle's own
    threshold(s), temperature and segmentation post-processing — nothing is chosen or fitted on the
    new data — and ``metrics.json`` says ``"split": "external"`` and ``"external": true``. ``on_bad_file``
    (``skip``/``error``) replaces the training recipe's ``data.on_bad_file``; skipped files are listed in
    ``bad_files.txt``.
    """
    import yaml

    from medattn.bundle import load_bundle
    from medattn.engine.config import recipe_from_dict
    from medattn.engine.datamodule import build_data
    from medattn.engine.evaluate_run import evaluate_model

    if split not in ("test", "valid", "train"):
        raise ConfigError(f"--split must be test, valid or train, got '{split}'")
    p = Path(path)
    split_table = None
    trained_on = None
    if (p / "recipe.yaml").is_file():
        recipe = recipe_from_dict(yaml.safe_load((p / "recipe.yaml").read_text()), f"recipe '{p}/recipe.yaml'")
        bundle_path = p / "bundle"
        meta = json.loads((p / "run.json").read_text()) if (p / "run.json").is_file() else {}
        trained_on = meta.get("data")
        if data is None:
            data = trained_on
            if (p / "split.csv").is_file():
                from medattn.data.splits import read_split_csv

                split_table = read_split_csv(p / "split.csv")
        default_out = p
    else:
        bundle_path = p
        default_out = p.parent if p.suffix == ".zip" else p
        recipe = None
    if not Path(bundle_path).exists():
        raise BundleError(f"'{bundle_path}' not found; pass a run directory (with bundle/) or a bundle")
    pred = load_bundle(bundle_path)
    if recipe is None:
        raw = pred.meta.get("recipe")
        if not isinstance(raw, dict) or "task" not in raw:
            raise BundleError(f"bundle '{p}' carries no training recipe; evaluate its run directory instead")
        recipe = recipe_from_dict(raw, f"recipe in bundle '{p}'")
    if data is None:
        raise ConfigError("no data path; pass --data PATH")
    if on_bad_file is not None:
        recipe.data.on_bad_file = on_bad_file
    trained_on = (pred.meta.get("training_data") or {}).get("path") or trained_on
    if external is None:
        external = split_csv is None and (trained_on is None or Path(data).resolve() != Path(trained_on).resolve())
    if not Path(data).exists():
        raise ConfigError(f"--data '{data}' does not exist; pass the folder (or CSV manifest) to score")
    if split_csv is not None:
        from medattn.data.splits import read_split_csv

        split_table = read_split_csv(split_csv)
    from medattn.io import ensure_dir
    from medattn.progress import step

    tta = ", 8-view test-time augmentation" if recipe.evaluation.tta else ""
    if external:
        recipe = _with_bundle_classes(recipe, pred.class_names, data)
        with step(f"reading '{data}'"):
            rd = build_data(recipe, data, split_table, required=("test",), every_item=split_table is None)
        _check_classes(rd.class_names, pred.class_names, data)
        out_dir = ensure_dir(Path(out) if out else default_out / f"eval_external_{Path(data).name}")
        n = int((rd.table["split"] == "test").sum())
        with step(f"external evaluation ({n} items{tta}; the bundle's thresholds)"):
            ev = evaluate_model(recipe, pred.model, rd, out_dir, split="test", fixed=_bundle_choices(pred.meta),
                                scorer=_infer_scorer(pred))
        doc = _external_record(out_dir / "metrics.json", pred.meta, data, rd)
        _append_to_card(bundle_path, doc)
        return {"metrics": ev["metrics"], "out": str(out_dir), "external": True, "n_items": doc["n_items"],
                "coverage": ((doc.get("conformal") or {}).get("guarantee") or {}).get("message")}
    with step(f"reading '{data}'"):
        rd = build_data(recipe, data, split_table)
    _check_classes(rd.class_names, pred.class_names, data)
    if not (rd.table["split"] == split).any():
        raise ConfigError(f"'{data}' is the data this model was trained on and its split has no '{split}' items "
                          "(a final model, data.split.test_fraction 0); score new data with --data NEW, or pass "
                          "--external to score every item of this folder")
    out_dir = ensure_dir(Path(out) if out else default_out / f"eval_{split}")
    with step(f"evaluation on the {split} split ({int((rd.table['split'] == split).sum())} items{tta})"):
        ev = evaluate_model(recipe, pred.model, rd, out_dir, split=split)
    return {"metrics": ev["metrics"], "out": str(out_dir), "external": False}


def _infer_scorer(pred: Any) -> Any:
    """``dataset → probabilities`` through :meth:`Predictor.infer` on the dataset's files (the one
    inference entry), or ``None`` for data that are not files (PCam HDF5), scored as in training."""

    def score(ds: Any) -> Any:
        import numpy as np

        from medattn.engine.evaluate_run import predict_scores
        from medattn.progress import track

        root, table = getattr(ds, "root", None), getattr(ds, "table", None)
        if pred.task == "segmentation" or root is None or table is None or "file" not in table.columns:
            views = 8 if pred.meta.get("tta") else 1
            return predict_scores(pred.model, ds, "multilabel" if pred.task == "multilabel" else pred.task, tta=views)
        names = pred.class_names
        files = [Path(root) / str(f) for f in table["file"]]
        rows = []
        views = " (8-view TTA)" if pred.meta.get("tta") else ""
        with track(f"predicting {len(files)} files{views}", len(files)) as tick:
            for s in range(0, len(files), 256):
                for ans in pred.infer(files[s:s + 256], trust=False, batch_size=64, errors="return"):
                    if "error" in ans:
                        rows.append(np.full(1 if pred.task == "binary" else len(names), np.nan))
                    elif pred.task == "binary":
                        rows.append(np.asarray([ans["probabilities"][names[1]]]))
                    else:
                        rows.append(np.asarray([ans["probabilities"][n] for n in names]))
                tick(len(files[s:s + 256]))
        p = np.stack(rows) if rows else np.zeros((0, 1))
        return p[:, 0] if pred.task == "binary" else p

    return score


def _check_classes(data_names: list[str], bundle_names: list[str], data: str | Path) -> None:
    if list(data_names) != list(bundle_names):
        raise BundleError(f"the bundle's classes {list(bundle_names)} differ from the classes of '{data}' "
                          f"{list(data_names)}; give data with the bundle's classes (same names and order)")


def _with_bundle_classes(recipe: Any, names: list[str], data: str | Path) -> Any:
    """The recipe with the bundle's class order, so new data is labelled as in training; class
    folders that differ from the bundle's classes are refused naming both lists."""
    from medattn.engine.config import recipe_from_dict

    if recipe.data.format == "folders":
        from medattn.data.formats.folders import class_order
        from medattn.errors import DataError

        try:
            found = class_order(Path(data), None, recipe.data.options.get("class_pattern"))
        except DataError as exc:
            raise BundleError(f"'{data}': {exc}") from None
        if sorted(found) != sorted(names):
            raise BundleError(f"the bundle's classes {list(names)} differ from the class folders of '{data}' "
                              f"{found}; give one folder per bundle class")
    if recipe.data.format not in ("folders", "csv"):
        return recipe
    raw = recipe.model_dump(mode="json")
    raw["data"]["class_names"] = list(names)
    return recipe_from_dict(raw, "bundle recipe")


def _bundle_choices(meta: dict[str, Any]) -> dict[str, Any]:
    """Threshold(s) and temperature the bundle chose on its own validation split."""
    out: dict[str, Any] = {"threshold": float(meta.get("threshold", 0.5))}
    if meta.get("thresholds") is not None:
        out["thresholds"] = [float(v) for v in meta["thresholds"]]
    elif meta.get("task") == "multilabel":
        out["thresholds"] = [0.5] * len(meta["class_names"])
    if meta.get("temperature") is not None:
        out["temperature"] = float(meta["temperature"])
    if meta.get("positive_view"):
        out["positive_view"] = meta["positive_view"]
    if meta.get("conformal"):  # issue 17: coverage of the bundle's own conformal sets on the new data
        out["conformal"] = meta["conformal"]
    return out


def _external_record(path: Path, meta: dict[str, Any], data: str | Path, rd: Any) -> dict[str, Any]:
    """Add the external-evaluation facts to ``metrics.json`` and return it."""
    from medattn.io import atomic_write_json

    doc = json.loads(path.read_text())
    trained = meta.get("training_data") or {}
    doc.update(split="external", external=True, data=str(Path(data).resolve()), trained_on=trained.get("path"),
               n_groups=doc.get("n_groups") or int(rd.table["group"].nunique()))
    if meta.get("validation_calibration"):
        doc["validation_calibration"] = meta["validation_calibration"]
    if "prevalence" in doc:
        doc["prevalence"] = {"external": doc["prevalence"], "training": trained.get("prevalence_train")}
    doc["chosen_by_bundle"] = {k: meta[k] for k in ("threshold", "thresholds", "temperature", "postprocess", "tta",
                                                    "positive_view")
                               if meta.get(k) is not None}
    guarantee = (doc.get("conformal") or {}).get("guarantee")
    if guarantee:
        doc["conformal_coverage_held"] = guarantee["held"]
    atomic_write_json(path, doc)
    return doc


def _append_to_card(bundle_path: str | Path, doc: dict[str, Any]) -> None:
    """Record the external evaluation in the bundle's model card."""
    from medattn.bundle import append_external_evaluation

    record = {k: doc.get(k) for k in ("data", "n_items", "n_groups", "metrics")}
    guarantee = (doc.get("conformal") or {}).get("guarantee")
    if guarantee:
        record["conformal_coverage"] = {"held": guarantee["held"], "message": guarantee["message"],
                                        "alphas": {k: {kk: v[kk] for kk in ("target", "coverage", "held")}
                                                   for k, v in guarantee["alphas"].items()}}
    append_external_evaluation(bundle_path, record)
