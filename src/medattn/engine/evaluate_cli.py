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
                  out: str | Path | None = None, split_csv: str | Path | None = None) -> dict[str, Any]:
    """Evaluate a run directory or bundle on ``split``; returns metrics and the output folder.

    ``split_csv`` (a ``split.csv`` with ``file, split, group, label``) fixes which items are
    train/valid/test, e.g. a published split; otherwise a run keeps its own split and a bundle's
    recipe splits the data as in training.
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
    if (p / "recipe.yaml").is_file():
        recipe = recipe_from_dict(yaml.safe_load((p / "recipe.yaml").read_text()), f"recipe '{p}/recipe.yaml'")
        bundle_path = p / "bundle"
        meta = json.loads((p / "run.json").read_text()) if (p / "run.json").is_file() else {}
        if data is None:
            data = meta.get("data")
            if (p / "split.csv").is_file():
                from medattn.data.splits import read_split_csv

                split_table = read_split_csv(p / "split.csv")
        out_dir = Path(out) if out else p / f"eval_{split}"
    else:
        bundle_path = p
        out_dir = Path(out) if out else (p.parent if p.suffix == ".zip" else p) / f"eval_{split}"
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
    if split_csv is not None:
        from medattn.data.splits import read_split_csv

        split_table = read_split_csv(split_csv)
    rd = build_data(recipe, data, split_table)
    if list(rd.class_names) != list(pred.class_names):
        raise BundleError(f"the bundle's classes {pred.class_names} differ from the data's {rd.class_names}")
    from medattn.io import ensure_dir

    ev = evaluate_model(recipe, pred.model, rd, ensure_dir(out_dir), split=split)
    return {"metrics": ev["metrics"], "out": str(out_dir)}
