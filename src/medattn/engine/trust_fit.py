"""Training-time fitting of the trust numbers a bundle carries, and their test-split metrics.

- :func:`evaluation_trust` (called by :func:`medattn.engine.evaluate_run.evaluate_model`): the
  conformal calibration on validation probabilities (as served: with TTA when the bundle uses it),
  then on the evaluated split the empirical coverage and mean set size at ``alpha`` 0.1 and 0.2
  with bootstrap CIs (patients resampled when known) and the risk–coverage AURC. External
  evaluations reuse the bundle's calibration (``fixed["conformal"]``) and refit nothing.
- :func:`bundle_trust` (called by :func:`medattn.engine.report_run.write_bundle`): the input
  contract (a sample of raw training images, and the object scale the model saw) and the
  multi-layer feature-space model (Gaussians on training + validation features, threshold on
  out-of-fold validation scores), never anything from test.

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
           "trust_features", "coverage_guarantee", "COVERAGE_TOLERANCE",
           "EVAL_ALPHAS", "MAX_CONTRACT_ITEMS", "MAX_FEATURE_ITEMS"]

log = logging.getLogger(__name__)

EVAL_ALPHAS = (0.1, 0.2)
COVERAGE_TOLERANCE = 0.05
"""External coverage more than this below ``1 - alpha`` is flagged (the guarantee did not hold)."""
MAX_CONTRACT_ITEMS = 300
MAX_FEATURE_ITEMS = 800


def _sample(n: int, k: int, seed: int) -> np.ndarray:
    idx = np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(idx, k, replace=False)) if n > k else idx


def fit_contract(recipe: Any, data: Any, feats: dict[str, Any] | None = None, *,
                 max_items: int = MAX_CONTRACT_ITEMS) -> dict[str, Any]:
    """Input contract from a sample of raw training images (sizes, colour, intensities) and, from the
    input statistics in ``feats`` (:func:`trust_features`), the object scale the model saw."""
    from medattn.data.formats.registry import read_item
    from medattn.trust.contract import image_stats, object_scale_record, summarise_stats
    from medattn.trust.ood import INPUT

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
    doc = summarise_stats(stats, in_chans=recipe.data.in_chans, input_size=recipe.data.image_size, resolution=res)
    inp = ((feats or {}).get("train") or {}).get(INPUT)
    if inp is not None and len(inp):
        doc["object_scale"] = object_scale_record(inp)
    return doc


@torch.no_grad()
def extract_features(model: torch.nn.Module, ds: Any, layers: list[str] | None = None, *, mean: Any = None,
                     std: Any = None, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Pooled features of every item of ``ds`` at ``layers`` (default: the head, the input of the
    last linear layer; :data:`~medattn.trust.ood.INPUT` adds the input statistics, un-normalised by
    ``mean``/``std``): ``{layer: N×D}``."""
    from medattn.trust.ood import HEAD, INPUT, capture_features, input_features

    layers = [HEAD] if layers is None else list(layers)
    model.eval()
    dev = next(model.parameters()).device
    inputs: list[np.ndarray] = []
    with capture_features(model, layers) as store:
        for batch in DataLoader(ds, batch_size=batch_size, shuffle=False):
            x = batch[0]
            model(x.to(dev))
            if INPUT in layers:
                inputs.append(input_features(x, mean, std))
    out = {k: torch.cat(v).numpy() for k, v in store.items() if v}
    if INPUT in layers and inputs:
        out[INPUT] = np.concatenate(inputs)
    return out


def _eval_view(recipe: Any, ds: Any) -> Any:
    """``ds`` (unwrapped from repeats) with the evaluation transform instead of augmentation."""
    from medattn.engine.datamodule import transforms_for

    base = copy.copy(getattr(ds, "base", ds))
    if hasattr(base, "transform"):
        base.transform = transforms_for(recipe, train=False)
    return base


def trust_features(recipe: Any, model: torch.nn.Module, data: Any, *,
                   max_items: int = MAX_FEATURE_ITEMS) -> dict[str, Any]:
    """Features of a sample of training and validation items as the bundle serves them (evaluation
    transform): ``{"layers", "train", "valid", "train_labels", "valid_labels", "valid_groups"}``."""
    from medattn.trust.ood import HEAD, INPUT, feature_layer, stage_layers

    seed = recipe.trainer.seed
    train = _eval_view(recipe, data.train)
    ti = _sample(len(train), max_items, seed)
    vi = _sample(len(data.valid), max_items, seed + 1)
    if len(ti) == 0:
        return {}
    x0 = torch.stack([train[int(i)][0] for i in ti[:2]])
    dev = next(model.parameters()).device
    stages = [] if recipe.task.type == "segmentation" else stage_layers(model, x0.to(dev))
    layers = [*stages, *([HEAD] if feature_layer(model) is not None else []), INPUT]
    kw = {"mean": recipe.data.mean, "std": recipe.data.std}
    out: dict[str, Any] = {"layers": layers,
                           "train": extract_features(model, Subset(train, ti.tolist()), layers, **kw),
                           "valid": extract_features(model, Subset(data.valid, vi.tolist()), layers, **kw)}

    def picked(ds: Any, idx: np.ndarray, what: str) -> Any:
        fn = getattr(ds, what, None)
        vals = None if fn is None else fn()
        return None if vals is None else [vals[int(i)] for i in idx]

    out["train_labels"] = picked(train, ti, "labels")
    out["valid_labels"] = picked(getattr(data.valid, "base", data.valid), vi, "labels")
    out["valid_groups"] = picked(getattr(data.valid, "base", data.valid), vi, "groups")
    return out


def fit_ood(recipe: Any, feats: dict[str, Any]) -> dict[str, Any]:
    """The multi-component OOD model (:func:`medattn.trust.ood.fit_ood`) from :func:`trust_features`:
    Gaussians on training + validation features, threshold on out-of-fold validation scores."""
    from medattn.trust.ood import fit_ood as fit

    if not feats or len(next(iter(feats["train"].values()), [])) < 4:
        return {}
    lab = feats["train_labels"]
    vlab = feats["valid_labels"]
    return fit(feats["train"], None if lab is None else np.asarray(lab), feats["valid"],
               None if vlab is None else np.asarray(vlab), valid_groups=feats["valid_groups"],
               seed=recipe.trainer.seed)


def conformal_metrics(cal: dict[str, Any], y: np.ndarray, prob: np.ndarray, groups: Any, *, n_boot: int,
                      ci_alpha: float, seed: int, alphas: tuple[float, ...] = EVAL_ALPHAS) -> dict[str, Any]:
    """Empirical coverage and mean set size at each ``alpha`` with bootstrap CIs, and the coverage
    within each true class (``coverage_<class>``; binary and multiclass) of the bundle's own sets."""
    from medattn.metrics.bootstrap import bootstrap_ci

    out: dict[str, Any] = {}
    methods = ["aps", "raps"] if cal["score"] == "aps" else [None]
    names = list(cal.get("classes") or [])
    yy = np.asarray(y)
    per_class = yy.ndim == 1 and len(names) >= 2
    for a in alphas:
        for m in methods:
            st = coverage_stats(cal, y, prob, a, m)

            def fn(i: np.ndarray, st: dict[str, np.ndarray] = st, m: Any = m) -> dict[str, float]:
                row = {"coverage": float(st["covered"][i].mean()), "mean_set_size": float(st["size"][i].mean())}
                if per_class and m in (None, "aps"):
                    yi = yy[i].astype(int)
                    for c, n in enumerate(names):
                        hit = st["covered"][i][yi == c]
                        row[f"coverage_{n}"] = float(hit.mean()) if len(hit) else float("nan")
                return row

            res = bootstrap_ci(fn, len(y), groups, max(n_boot, 1), ci_alpha, seed)
            key = f"alpha_{a:g}" + (f"_{m}" if m and m != "aps" else "")
            out[key] = {"target_coverage": 1 - a, **res}
    return out


def coverage_guarantee(conformal: dict[str, Any], *, tolerance: float = COVERAGE_TOLERANCE) -> dict[str, Any]:
    """Whether the coverage of conformal sets held on data the bundle was not calibrated on: per
    ``alpha``, the overall and per-class coverage against ``1 - alpha``; ``held`` is False when the
    overall coverage falls more than ``tolerance`` (5 points) below it, and ``classes_below`` lists
    the classes that do. Returns ``{"held", "tolerance", "alphas": {...}, "message"}``."""
    rows, held, worst = {}, True, []
    for key, v in conformal.items():
        if not key.startswith("alpha_") or not isinstance(v, dict) or "coverage" not in v:
            continue
        if key.endswith("_raps"):
            continue
        target = float(v["target_coverage"])
        cov = float(v["coverage"]["value"])
        below = {k.removeprefix("coverage_"): round(float(c["value"]), 4) for k, c in v.items()
                 if k.startswith("coverage_") and np.isfinite(c["value"]) and c["value"] < target - tolerance}
        ok = cov >= target - tolerance
        held = held and ok
        if not ok:
            worst.append(f"{100 * cov:.1f}% instead of {100 * target:.0f}% at alpha {key.removeprefix('alpha_')}")
        rows[key] = {"target": round(target, 4), "coverage": round(cov, 4), "shortfall": round(target - cov, 4),
                     "held": ok, "classes_below": below}
    msg = ("the prediction sets covered the true class about as often as promised on this data" if held else
           "the coverage guarantee did NOT hold on this data (" + "; ".join(worst) + "): its images differ from the "
           "validation images the sets were calibrated on, so the sets are too small here; recalibrate on "
           "labelled data from this site before relying on them")
    return {"held": held, "tolerance": tolerance, "alphas": rows, "message": msg}


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
        cal = (fixed or {}).get("conformal") if fixed is not None else fit_conformal(
            kind, yv, pv, names, mondrian=getattr(ev, "conformal", "aps") == "mondrian")
        if cal is not None and not (fixed is None and split == "valid"):
            doc["conformal"] = {"calibrated_on": "the bundle's validation split" if fixed else "valid",
                                "score": cal["score"], "n_calibration": cal["n"], **conformal_metrics(
                                    cal, yt, pt, groups, n_boot=ev.n_boot, ci_alpha=ev.ci_alpha,
                                    seed=recipe.trainer.seed)}
            if fixed is not None:  # external data: did the guarantee hold?
                doc["conformal"]["guarantee"] = coverage_guarantee(doc["conformal"])
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
    feats: dict[str, Any] = {}
    if recipe.task.type != "segmentation":
        try:
            feats = trust_features(recipe, model, data)
        except Exception as exc:  # noqa: BLE001 - a bundle without these still works
            log.warning("extracting features for the trust checks failed: %s", exc)
    for key, fn in (("contract", lambda: fit_contract(recipe, data, feats)), ("ood", lambda: fit_ood(recipe, feats))):
        try:
            val = fn()
            if val:
                out[key] = val
        except Exception as exc:  # noqa: BLE001 - a bundle without these still works
            log.warning("fitting the %s failed: %s", key, exc)
    out["synthetic_data"] = _synthetic(data, Path(bundle_path).parent)
    return out
