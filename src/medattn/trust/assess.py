"""Trust outputs of one batch of predictions: warnings, OOD score, conformal set, uncertainty.

:func:`assess` adds to every prediction of :meth:`medattn.bundle.Predictor.predict`:

- ``warnings``: ``[{"code", "message"}]`` from the input contract (size, aspect, channels,
  intensity, ``scale``: declared resolution or object scale unlike training) and ``ood`` when the
  feature-space score is above the bundle's validation threshold;
- ``notes``: ``scale_unknown`` when the bundle knows its µm/px and the input declares none;
- ``ood_score`` and ``ood_threshold`` (bundles with a feature-space model);
- ``prediction_set`` at ``alpha`` (default 0.1) and ``set_label`` (binary: one class, or
  "uncertain — refer" when both are in the set);
- ``uncertainty``: ``entropy`` (normalised), ``tta_std`` (TTA bundles), ``mc_std`` and
  ``mutual_information`` (``mc_samples`` > 1, models with dropout);
- ``calibrated_probabilities`` when the bundle carries a temperature fitted on validation.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from medattn.errors import ConfigError

__all__ = ["assess", "assess_tiles", "summarise_tiles", "REFER", "warnings_summary"]

REFER = "uncertain — refer"
_LOCK = threading.Lock()


def _features(predictor: Any, x: torch.Tensor, layers: list[str],
              captured: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Pooled features of ``x`` at ``layers`` (stages, head, input statistics): those ``captured``
    during the prediction's own forward pass (``details["features"]`` of
    :meth:`~medattn.bundle.Predictor.predict_tensor`), else from a pass of the served model whose
    hooks record only this thread's passes (concurrent inference, e.g. the API's batching worker,
    is not captured)."""
    from medattn.trust.ood import INPUT, capture_features, input_features

    out: dict[str, np.ndarray] = {}
    nets = [n for n in layers if n != INPUT]
    if nets and captured is not None and all(n in captured and len(captured[n]) == len(x) for n in nets):
        out = {n: captured[n] for n in nets}
    elif nets:
        with capture_features(predictor.model, nets, thread=threading.get_ident()) as store, torch.no_grad():
            predictor.model(x.to(predictor.device))
        out = {k: torch.cat(v).numpy() for k, v in store.items() if v}
    if INPUT in layers:
        out[INPUT] = input_features(x, predictor.meta.get("mean"), predictor.meta.get("std"))
    return out


def _ood(predictor: Any, x: torch.Tensor, inputs: bool = True,
         captured: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(scores, input statistics)`` of ``x``: the bundle's OOD score per row (None without a model
    or when the features do not fit it) and the input-statistics rows (for the scale check; None
    without ``inputs``: they cost more than a small network's forward pass, so tiles skip them)."""
    from medattn.trust.ood import HEAD, INPUT, ood_scores

    ood = predictor.meta.get("ood") or {}
    layers = list(ood.get("layers") or ([HEAD] if ood else []))
    want = layers if INPUT in layers or not inputs else [*layers, INPUT]
    f = _features(predictor, x, want, captured)
    scores = None
    if ood and all(n in f for n in layers):
        try:
            scores = ood_scores(ood, {n: f[n] for n in layers})
        except ValueError:  # features of another shape than the stored model's
            scores = None
    return scores, f.get(INPUT) if inputs else None


def _probs_fn(predictor: Any, model: torch.nn.Module) -> Any:
    from medattn.models.outputs import probabilities

    return lambda v: probabilities(model(v), predictor.task)


def _mc_model(predictor: Any) -> torch.nn.Module:
    """A private copy of the model for MC dropout (dropout switched on never touches the served one)."""
    with _LOCK:
        m = getattr(predictor, "_mc_copy", None)
        if m is None:
            m = copy.deepcopy(predictor.model).eval()
            predictor._mc_copy = m
    return m


def _calibrated(task: str, p: np.ndarray, temperature: float) -> np.ndarray:
    from medattn.metrics.calibration import apply_temperature, logits_from_probs

    if task == "multiclass":
        return apply_temperature(logits_from_probs(p), temperature)
    flat = np.asarray(p, np.float64).reshape(-1)
    return apply_temperature(logits_from_probs(flat), temperature).reshape(np.shape(p))


def _set_label(task: str, s: Any) -> str:
    if not s:
        return "no class fits — refer"
    if task == "binary":
        return REFER if len(s) != 1 else s[0]
    if task == "multiclass":
        return s[0] if len(s) == 1 else f"{REFER}: one of {', '.join(s)}"
    unsure = [k for k, v in s.items() if len(v) != 1]
    return f"{REFER} ({', '.join(unsure)})" if unsure else "decided for every finding"


def assess(predictor: Any, images: Sequence[Any] | None, x: torch.Tensor, probs: np.ndarray, *,
           alpha: float | None = None, method: str | None = None, mc_samples: int = 0,
           tiled: bool = False, scale: Sequence[dict[str, Any]] | None = None,
           details: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Trust outputs of each image (see the module docstring).

    Args:
        predictor: the :class:`~medattn.bundle.Predictor`.
        images: decoded images (``uint8`` arrays), for the input contract.
        x: their prepared batch.
        probs: rows of :meth:`~medattn.bundle.Predictor.predict_tensor` for ``x``.
        alpha: miscoverage of the prediction sets (default: the bundle's, 0.1).
        method: multiclass set score, ``aps`` (default) or ``raps``.
        mc_samples: forward passes with dropout on (0 = off).
        tiled: the images are seen tile by tile at their own scale (segmentation fields of view,
            tiled classification): their size and aspect are not warned about.
        scale: per image ``{"mpp", "mpp_source", "zoom"}`` (declared resolution and model pixels per
            image pixel) for the scale check (:func:`medattn.trust.contract.check_scale`); ``None``
            skips it (tiles, whose image is checked whole).
        details: what the prediction's forward passes recorded (``features``, ``views``: see
            :meth:`~medattn.bundle.Predictor.predict_tensor`); without them the checks run the model again.
    """
    from medattn.trust.contract import check_image, check_scale, warning
    from medattn.trust.uncertainty import (
        has_dropout,
        mc_dropout,
        normalised_entropy,
        tta_std,
        view_probabilities,
    )

    meta, task = predictor.meta, predictor.task
    if alpha is not None and not 0 < float(alpha) < 1:
        raise ConfigError(f"alpha must be between 0 and 1 (exclusive), got {alpha}")
    contract = meta.get("contract") or {}
    if images is None:  # tiles: no contract check per tile (the whole image is checked)
        out: list[dict[str, Any]] = [{"warnings": []} for _ in range(len(x))]
    else:
        out = [{"warnings": [w for w in check_image(contract, im) if not (tiled and w["code"] in ("input_size", "aspect"))]}
               for im in images]
    if task == "segmentation":
        if scale is not None:
            for row, sc in zip(out, scale, strict=True):
                w, n = check_scale(meta, mpp=sc.get("mpp"), mpp_source=sc.get("mpp_source"), zoom=1.0)
                row["warnings"] += w
                row["notes"] = n
        return out
    p = np.asarray(probs)
    unc: dict[str, np.ndarray] = {"entropy": normalised_entropy(p, task)}
    probs_of = _probs_fn(predictor, predictor.model)
    if meta.get("tta"):
        views = (details or {}).get("views")
        if views is None or views.shape[1] != len(x):
            with torch.no_grad():
                views = view_probabilities(probs_of, x.to(predictor.device))
        unc["tta_std"] = tta_std(views)
    if mc_samples and mc_samples > 1 and has_dropout(predictor.model):
        m = _mc_model(predictor)
        with _LOCK:
            mc = mc_dropout(_probs_fn(predictor, m), m, x.to(predictor.device), mc_samples, task)
        unc.update(mc_std=mc["mc_std"], mutual_information=mc["mutual_information"])
    ood = meta.get("ood")
    scores, inputs = _ood(predictor, x, inputs=scale is not None, captured=(details or {}).get("features"))
    if scale is not None:
        for i, (row, sc) in enumerate(zip(out, scale, strict=True)):
            w, n = check_scale(meta, inputs=None if inputs is None else inputs[i:i + 1], mpp=sc.get("mpp"),
                               mpp_source=sc.get("mpp_source"), zoom=float(sc.get("zoom", 1.0)))
            row["warnings"] += w
            row["notes"] = n
    cal = meta.get("conformal")
    sets = None
    a = float(alpha if alpha is not None else (cal or {}).get("default_alpha", 0.1))
    if cal:
        from medattn.trust.conformal import prediction_sets

        sets = prediction_sets(cal, p, a, method)
    temp = meta.get("temperature")
    calp = _calibrated(task, p, float(temp)) if temp else None
    names = predictor.class_names
    for i, row in enumerate(out):
        row["uncertainty"] = {k: round(float(v[i]), 6) for k, v in unc.items()}
        if scores is not None:
            s, t = float(scores[i]), float(ood["threshold"])
            row.update(ood_score=round(s, 4), ood_threshold=round(t, 4))
            if s > t:
                row["warnings"].append(warning(
                    "ood", f"out-of-distribution: feature score {s:.2f} is above the threshold {t:.2f} "
                           f"({100 * ood.get('threshold_quantile', 0.95):.0f}th percentile of validation images); "
                           "the image is unlike the training data"))
        if sets is not None:
            row.update(prediction_set=sets[i], set_label=_set_label(task, sets[i]), alpha=a)
        if calp is not None:
            cp = calp[i]
            if task == "binary":
                two = names if len(names) == 2 else ["negative", "positive"]
                row["calibrated_probabilities"] = {two[0]: 1 - float(cp), two[1]: float(cp)}
            else:
                row["calibrated_probabilities"] = dict(zip(names, map(float, cp), strict=True))
            row["temperature"] = float(temp)
    return out


def assess_tiles(predictor: Any, image: np.ndarray | None, x: torch.Tensor, probs: np.ndarray, *,
                 alpha: float | None = None, method: str | None = None,
                 scale: dict[str, Any] | None = None, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """Trust outputs of an image seen tile by tile at its own scale: the input contract on the whole
    image (size and aspect aside; ``image`` None: no contract check, e.g. slide tiles), the scale
    check (declared resolution, and the median object scale over tiles), and per tile the OOD flag
    and the prediction set, summarised (:func:`summarise_tiles`).

    Returns ``warnings`` (an image-level ``ood`` warning when more than the bundle's
    ``ood.tile_share`` (default 0.5) of the tiles are out of distribution), ``notes``,
    ``tile_ood_share``, ``tile_ood_score_median``, ``tile_sets`` (share of tiles per prediction set,
    e.g. ``{"IDC": 0.2, "non-IDC": 0.7, "IDC|non-IDC": 0.1}``) and ``alpha``.
    """
    from medattn.trust.contract import check_image, check_scale
    from medattn.trust.ood import input_features

    rows = assess(predictor, None, x, probs, alpha=alpha, method=method, details=details)
    meta = predictor.meta
    inputs = input_features(x, meta.get("mean"), meta.get("std")) if scale is not None else None
    warns = [] if image is None else [w for w in check_image(predictor.meta.get("contract") or {}, image)
                                      if w["code"] not in ("input_size", "aspect")]
    out: dict[str, Any] = {"warnings": warns}
    if scale is not None:
        w, n = check_scale(predictor.meta, inputs=inputs, mpp=scale.get("mpp"), mpp_source=scale.get("mpp_source"))
        warns += w
        out["notes"] = n
    out.update(summarise_tiles(predictor, rows))
    warns += out.pop("tile_warnings")
    return out


def summarise_tiles(predictor: Any, rows: Sequence[dict[str, Any]], *, per_tile: bool = False) -> dict[str, Any]:
    """Per-tile trust rows (:func:`assess`) → ``tile_ood_share``, ``tile_ood_score_median``,
    ``ood_threshold``, ``tile_sets``, ``alpha``, ``tile_warnings`` (the image-level ``ood`` warning
    when more than ``ood.tile_share`` of tiles are OOD) and, with ``per_tile``, ``tile_rows``
    (``ood`` flag and ``set`` of each tile, for doors that write a row per tile: slides)."""
    from medattn.trust.contract import warning

    out: dict[str, Any] = {"tile_warnings": []}
    scores = [r["ood_score"] for r in rows if "ood_score" in r]
    ood = predictor.meta.get("ood") or {}
    t = float(ood.get("threshold", np.inf))
    if scores:
        share = float(np.mean(np.asarray(scores) > t))
        limit = float(ood.get("tile_share", 0.5))
        out.update(tile_ood_share=round(share, 4), tile_ood_score_median=round(float(np.median(scores)), 4),
                   ood_threshold=round(t, 4))
        if share > limit:
            out["tile_warnings"].append(warning(
                "ood", f"out-of-distribution: {100 * share:.0f}% of the {len(scores)} tiles have feature scores "
                       f"above the threshold {t:.2f} (more than {100 * limit:.0f}%); the image is unlike the "
                       "training data"))
    sets = [r["prediction_set"] for r in rows if "prediction_set" in r]
    if sets and all(isinstance(s, list) for s in sets):
        from collections import Counter

        counts = Counter("|".join(s) if s else "(empty)" for s in sets)
        out["tile_sets"] = {k: round(v / len(sets), 4) for k, v in sorted(counts.items())}
        out["alpha"] = rows[0].get("alpha")
    if per_tile:
        out["tile_rows"] = [{"ood": bool(r["ood_score"] > t) if "ood_score" in r else None,
                             "set": "|".join(r["prediction_set"]) if isinstance(r.get("prediction_set"), list)
                             else None} for r in rows]
    return out


def warnings_summary(preds: Sequence[dict[str, Any]]) -> str:
    """One line listing the warnings of a list of predictions (for 422 bodies and logs)."""
    parts = []
    for i, pr in enumerate(preds):
        for w in pr.get("warnings") or []:
            parts.append(f"{pr.get('file') or f'item {i}'}: {w['code']}: {w['message']}")
    return "; ".join(parts)
