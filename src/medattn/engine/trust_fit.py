"""Training-time fitting of the trust numbers a bundle carries, and their test-split metrics.

- :func:`evaluation_trust` (called by :func:`medattn.engine.evaluate_run.evaluate_model`): the
  conformal calibration on validation probabilities (as served: with TTA when the bundle uses it),
  then on the evaluated split the empirical coverage and mean set size at ``alpha`` 0.1 and 0.2
  with bootstrap CIs (patients resampled when known) and the risk–coverage AURC. External
  evaluations reuse the bundle's calibration (``fixed["conformal"]``) and refit nothing.
- :func:`bundle_trust` (called by :func:`medattn.engine.report_run.write_bundle`): the input
  contract (a sample of raw training images) and the feature-space Gaussian (training features,
  threshold on validation), never anything from test.

Everything returned is plain numbers (JSON), never objects.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from medattn.trust.conformal import coverage_stats, fit_conformal

__all__ = ["evaluation_trust", "bundle_trust", "fit_contract", "fit_ood", "conformal_metrics", "extract_features",
           "EVAL_ALPHAS", "MAX_CONTRACT_ITEMS", "MAX_FEATURE_ITEMS"]

log = logging.getLogger(__name__)

EVAL_ALPHAS = (0.1, 0.2)
MAX_CONTRACT_ITEMS = 300
MAX_FEATURE_ITEMS = 800


def _sample(n: int, k: int, seed: int) -> np.ndarray:
    idx = np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(idx, k, replace=False)) if n > k else idx


def fit_contract(recipe: Any, data: Any, *, max_items: int = MAX_CONTRACT_ITEMS) -> dict[str, Any]:
    """Input contract from a sample of raw training images (sizes, colour, intensities)."""
    from medattn.data.formats.registry import read_item
    from medattn.trust.contract import image_stats, summarise_stats

    table = data.table[data.table["split"] == "train"]
    files = list(table["file"])
    stats = []
    for i in _sample(len(files), max_items, recipe.trainer.seed):
        try:
            stats.append(image_stats(read_item(data.root, files[i])))
        except Exception as exc:  # noqa: BLE001 - unreadable files are the bad-file policy's business
            log.debug("contract: skipping %s (%s)", files[i], exc)
    if not stats:
        return {}
    opts = recipe.data.options
    res = {k: opts[k] for k in ("magnification", "resolution") if k in opts}
    if getattr(recipe.data, "mpp", None):
        res["mpp"] = recipe.data.mpp  # µm per network-input pixel
    res = res or None
    return summarise_stats(stats, in_chans=recipe.data.in_chans, input_size=recipe.data.image_size, resolution=res)


@torch.no_grad()
def extract_features(model: torch.nn.Module, ds: Any, batch_size: int = 64) -> np.ndarray:
    """Penultimate features (input of the last linear layer) of every item of ``ds``: ``N×D``."""
    from medattn.trust.ood import capture_features

    model.eval()
    dev = next(model.parameters()).device
    with capture_features(model) as store:
        for batch in DataLoader(ds, batch_size=batch_size, shuffle=False):
            model(batch[0].to(dev))
    return torch.cat(store).numpy() if store else np.zeros((0, 0))


def _eval_view(recipe: Any, ds: Any) -> Any:
    """``ds`` (unwrapped from repeats) with the evaluation transform instead of augmentation."""
    from medattn.engine.datamodule import transforms_for

    base = copy.copy(getattr(ds, "base", ds))
    if hasattr(base, "transform"):
        base.transform = transforms_for(recipe, train=False)
    return base


def fit_ood(recipe: Any, model: torch.nn.Module, data: Any, *, max_items: int = MAX_FEATURE_ITEMS) -> dict[str, Any]:
    """Class-conditional Gaussian on training features, thresholded on validation features."""
    from medattn.trust.ood import feature_layer, fit_gaussian

    if feature_layer(model) is None:
        return {}
    seed = recipe.trainer.seed
    train = _eval_view(recipe, data.train)
    ti = _sample(len(train), max_items, seed)
    vi = _sample(len(data.valid), max_items, seed + 1)
    ft = extract_features(model, Subset(train, ti.tolist()))
    fv = extract_features(model, Subset(data.valid, vi.tolist()))
    if ft.size == 0 or len(ft) < 4:
        return {}
    labels = np.asarray(train.labels())[ti] if hasattr(train, "labels") else None
    return fit_gaussian(ft, labels, fv)


def conformal_metrics(cal: dict[str, Any], y: np.ndarray, prob: np.ndarray, groups: Any, *, n_boot: int,
                      ci_alpha: float, seed: int, alphas: tuple[float, ...] = EVAL_ALPHAS) -> dict[str, Any]:
    """Empirical coverage and mean set size at each ``alpha`` with bootstrap CIs."""
    from medattn.metrics.bootstrap import bootstrap_ci

    out: dict[str, Any] = {}
    methods = ["aps", "raps"] if cal["score"] == "aps" else [None]
    for a in alphas:
        for m in methods:
            st = coverage_stats(cal, y, prob, a, m)
            res = bootstrap_ci(lambda i, st=st: {"coverage": float(st["covered"][i].mean()),
                                                 "mean_set_size": float(st["size"][i].mean())},
                               len(y), groups, max(n_boot, 1), ci_alpha, seed)
            key = f"alpha_{a:g}" + (f"_{m}" if m and m != "aps" else "")
            out[key] = {"target_coverage": 1 - a, **res}
    return out


def _selective(kind: str, y: np.ndarray, prob: np.ndarray, threshold: Any) -> dict[str, Any]:
    from medattn.trust.selective import risk_coverage

    return risk_coverage(kind, y, prob, threshold)


def _synthetic(data: Any, out: Path) -> bool:
    from medattn.engine.smoke import SMOKE_STAMP

    root = Path(data.root)
    for d in (root, root.parent):
        if (d / "SYNTHETIC.txt").is_file() or (d / SMOKE_STAMP).is_file():
            return True
    try:
        import json

        return bool(json.loads((out / "run.json").read_text()).get("smoke"))
    except (OSError, ValueError):
        return False


def evaluation_trust(recipe: Any, *, kind: str, names: list[str], valid: tuple[Any, Any],
                     test: tuple[np.ndarray, np.ndarray], groups: Any, fixed: dict[str, Any] | None,
                     split: str = "test", threshold: Any = None) -> dict[str, Any]:
    """What ``evaluate_model`` adds: ``{"metrics": {...for metrics.json}, "conformal": calibration}``.

    Args:
        valid: ``(labels, probabilities)`` of the validation split (``(None, None)`` when external).
        test: ``(labels, probabilities)`` of the evaluated split.
        groups: per-item groups of the evaluated split (None: items resampled).
        fixed: the bundle's own choices on external evaluation (its ``conformal`` calibration).
        split: the evaluated split (no coverage is claimed on the calibration split itself).
        threshold: decision threshold(s), for the selective-prediction risk.
    """
    ev = recipe.evaluation
    yv, pv = valid
    yt, pt = test
    doc: dict[str, Any] = {}
    cal = None
    try:
        cal = (fixed or {}).get("conformal") if fixed is not None else fit_conformal(kind, yv, pv, names)
        if cal is not None and not (fixed is None and split == "valid"):
            doc["conformal"] = {"calibrated_on": "the bundle's validation split" if fixed else "valid",
                                "n_calibration": cal["n"], **conformal_metrics(
                                    cal, yt, pt, groups, n_boot=ev.n_boot, ci_alpha=ev.ci_alpha,
                                    seed=recipe.trainer.seed)}
        doc["selective"] = _selective(kind, yt, pt, threshold)
    except Exception as exc:  # noqa: BLE001 - trust numbers must never sink an evaluation
        log.warning("conformal/selective metrics failed: %s", exc)
    return {"metrics": doc, "conformal": cal}


def bundle_trust(recipe: Any, model: torch.nn.Module, data: Any, ev: dict[str, Any],
                 bundle_path: str | Path) -> dict[str, Any]:
    """Entries ``write_bundle`` adds to ``bundle.json``: ``conformal`` (from ``ev``), ``contract``
    and ``ood`` (fitted here on train, thresholded on validation), ``synthetic_data``."""
    out: dict[str, Any] = {}
    if ev.get("conformal"):
        out["conformal"] = ev["conformal"]
    for key, fn in (("contract", lambda: fit_contract(recipe, data)),
                    ("ood", lambda: fit_ood(recipe, model, data) if recipe.task.type != "segmentation" else {})):
        try:
            val = fn()
            if val:
                out[key] = val
        except Exception as exc:  # noqa: BLE001 - a bundle without these still works
            log.warning("fitting the %s failed: %s", key, exc)
    out["synthetic_data"] = _synthetic(data, Path(bundle_path).parent)
    return out
