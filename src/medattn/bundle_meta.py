"""Checks of ``bundle.json`` for meaning, not only type.

``bundle.json`` is plain text: its sha256 covers the weights only, so a hand-edited or foreign file
must fail at load time (every door loads through :func:`check_bundle_meta`) in one line naming the
field, never with a traceback deep inside preprocessing or a silently wrong answer (a threshold of
7 turns every patch negative). Checked:

- ``architecture`` (name, kwargs) and ``task`` (one of the bundle tasks);
- ``class_names``: distinct names; binary has exactly 2, multiclass at least 2; the head's output
  size (``architecture.kwargs.num_classes`` when recorded) matches the task and the names;
- ``input_size``, ``in_chans``, ``mean``/``std`` (one per channel, std > 0), ``mpp`` > 0 (top level,
  the recipe's ``data.mpp`` and the input contract's resolution);
- ``threshold``, ``thresholds`` (one per class), ``positive_view.threshold``: probabilities in [0, 1];
  ``temperature`` > 0;
- ``conformal``: every stratum's scores finite and sorted, ``n`` a count, ``default_alpha`` in (0, 1);
- ``ood``: every number finite, variances > 0, shapes consistent with ``dim`` and ``rank``;
- ``large_input``: policy ``tile`` or ``refuse``, factor ≥ 1.
"""

from __future__ import annotations

import math
from typing import Any

from medattn.errors import BundleError

__all__ = ["check_bundle_meta", "recorded_mpp", "BUNDLE_TASKS"]

BUNDLE_TASKS = ("binary", "multiclass", "multilabel", "segmentation")
_LARGE_INPUT_POLICIES = ("tile", "refuse")


def _is_int(v: Any) -> bool:
    """An integer (a JSON ``96.0`` counts; ``true`` does not)."""
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())


def _is_num(v: Any) -> bool:
    """A finite number (not a bool, not NaN or infinity)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_prob(v: Any) -> bool:
    return _is_num(v) and 0 <= v <= 1


def _show(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "…"


class _Checker:
    """Raises one :class:`BundleError` line per broken rule, naming the field."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, field: str, got: Any, rule: str) -> BundleError:
        return BundleError(f"'{self.where}/bundle.json' field '{field}' is {_show(got)}; {rule}: "
                           "re-export the bundle (or correct the field)")

    def need(self, ok: bool, field: str, got: Any, rule: str) -> None:
        if not ok:
            raise self.fail(field, got, rule)

    def numbers(self, v: Any, field: str, rule: str = "expected finite numbers") -> None:
        """Every number in a (nested) list is finite."""
        if isinstance(v, list):
            for i, x in enumerate(v):
                self.numbers(x, f"{field}[{i}]", rule)
        else:
            self.need(_is_num(v), field, v, rule)


def recorded_mpp(meta: dict[str, Any]) -> float | None:
    """µm per model-input pixel the bundle records (``mpp``, else its recipe's ``data.mpp``), or None."""
    v = meta.get("mpp") or ((meta.get("recipe") or {}).get("data") or {}).get("mpp")
    return float(v) if v else None


def _head_outputs(task: str, names: list[str]) -> set[int] | None:
    """Output sizes a head may have for ``task`` (None: not checked here; weight loading decides)."""
    if task == "binary":
        return {1}
    if task in ("multiclass", "multilabel"):
        return {len(names)}
    return None


def check_bundle_meta(meta: dict[str, Any], where: str) -> None:
    """Raise :class:`BundleError` naming the first field of ``meta`` that is malformed or meaningless.

    Args:
        meta: the parsed ``bundle.json``.
        where: the bundle path, for the message.
    """
    c = _Checker(where)
    arch = meta.get("architecture")
    c.need(isinstance(arch, dict) and isinstance(arch.get("name"), str), "architecture", arch,
           "expected a mapping with a 'name'")
    kwargs = arch.get("kwargs", {})
    c.need(isinstance(kwargs, dict), "architecture.kwargs", kwargs, "expected a mapping")
    task = meta.get("task", "binary")
    c.need(task in BUNDLE_TASKS, "task", task, f"expected one of {', '.join(BUNDLE_TASKS)}")
    _check_classes(c, meta, task, kwargs)
    _check_input(c, meta)
    _check_decisions(c, meta, task)
    if meta.get("conformal") is not None:
        _check_conformal(c, meta["conformal"], len(meta["class_names"]))
    if meta.get("ood") is not None:
        _check_ood(c, meta["ood"])
    rule = meta.get("large_input")
    if rule is not None:
        c.need(isinstance(rule, dict), "large_input", rule, "expected a mapping with 'policy' and 'factor'")
        pol = rule.get("policy", "tile")
        c.need(pol in _LARGE_INPUT_POLICIES, "large_input.policy", pol, "expected 'tile' or 'refuse'")
        fac = rule.get("factor", 2.0)
        c.need(_is_num(fac) and fac >= 1, "large_input.factor", fac,
               "expected a number ≥ 1 (inputs larger than factor × the training size are tiled or refused)")


def _check_classes(c: _Checker, meta: dict[str, Any], task: str, kwargs: dict[str, Any]) -> None:
    names = meta.get("class_names")
    c.need(isinstance(names, list) and bool(names) and all(isinstance(n, str) and n for n in names),
           "class_names", names, "expected a non-empty list of names")
    c.need(len(set(names)) == len(names), "class_names", names, "class names must be distinct")
    if task == "binary":
        c.need(len(names) == 2, "class_names", names,
               "a binary bundle names exactly 2 classes (negative, positive)")
    elif task == "multiclass":
        c.need(len(names) >= 2, "class_names", names, "a multiclass bundle names at least 2 classes")
    allowed = _head_outputs(task, names)
    k = kwargs.get("num_classes")
    if k is not None and allowed is not None:
        c.need(_is_int(k) and int(k) in allowed, "architecture.kwargs.num_classes", k,
               f"a {task} bundle with {len(names)} class names has a head of {min(allowed)} output(s)")


def _check_input(c: _Checker, meta: dict[str, Any]) -> None:
    size = meta.get("input_size")
    pair = isinstance(size, list) and len(size) == 2 and all(_is_int(s) for s in size)
    c.need((_is_int(size) and size > 0) or (pair and min(size) > 0), "input_size", size,
           "expected a positive integer or [height, width] of positive integers")
    chans = meta.get("in_chans")
    c.need(_is_int(chans) and 1 <= chans <= 4, "in_chans", chans, "expected an integer from 1 to 4")
    for key in ("mean", "std"):
        val = meta.get(key)
        c.need(isinstance(val, list) and len(val) == int(chans) and all(_is_num(v) for v in val), key, val,
               f"expected {int(chans)} finite numbers (one per input channel, in_chans is {int(chans)})")
    c.need(all(v > 0 for v in meta["std"]), "std", meta["std"], "standard deviations must be > 0")
    recipe_data = ((meta.get("recipe") or {}).get("data") or {}) if isinstance(meta.get("recipe"), dict) else {}
    resolution = ((meta.get("contract") or {}).get("resolution") or {}) if isinstance(meta.get("contract"),
                                                                                      dict) else {}
    for field, v in (("mpp", meta.get("mpp")), ("recipe.data.mpp", recipe_data.get("mpp")),
                     ("contract.resolution.mpp", resolution.get("mpp") if isinstance(resolution, dict) else None)):
        if v is not None:
            c.need(_is_num(v) and v > 0, field, v, "µm per pixel must be a positive number")


def _check_decisions(c: _Checker, meta: dict[str, Any], task: str) -> None:
    names = meta["class_names"]
    rule = "thresholds are probabilities in [0, 1]"
    if meta.get("threshold") is not None:
        c.need(_is_prob(meta["threshold"]), "threshold", meta["threshold"], rule)
    th = meta.get("thresholds")
    if th is not None:
        c.need(isinstance(th, list) and len(th) == len(names), "thresholds", th,
               f"expected one threshold per class ({len(names)})")
        for i, v in enumerate(th):
            c.need(_is_prob(v), f"thresholds[{i}]", v, rule)
    view = meta.get("positive_view")
    if view is not None:
        c.need(isinstance(view, dict) and isinstance(view.get("name"), str), "positive_view", view,
               "expected a mapping with 'name', 'classes' and 'threshold'")
        cls = view.get("classes")
        c.need(isinstance(cls, list) and bool(cls) and all(x in names for x in cls), "positive_view.classes", cls,
               f"expected a non-empty list of the bundle's classes {names}")
        c.need(_is_prob(view.get("threshold")), "positive_view.threshold", view.get("threshold"), rule)
    if meta.get("temperature") is not None:
        c.need(_is_num(meta["temperature"]) and meta["temperature"] > 0, "temperature", meta["temperature"],
               "a calibration temperature is a positive number")


def _check_stratum(c: _Checker, s: Any, field: str) -> None:
    c.need(isinstance(s, dict) and isinstance(s.get("scores"), list), field, s,
           "expected a mapping with 'n' and 'scores'")
    c.need(_is_int(s.get("n")) and s["n"] >= 0, f"{field}.n", s.get("n"), "expected a count of items")
    scores = s["scores"]
    c.numbers(scores, f"{field}.scores", "conformal scores are finite numbers")
    c.need(all(a <= b for a, b in zip(scores[:-1], scores[1:], strict=True)), f"{field}.scores", scores,
           "conformal scores are stored sorted (ascending)")
    c.need(len(scores) <= s["n"] or bool(s.get("grid")), f"{field}.scores", scores,
           f"more scores than the {s['n']} calibration items")


def _check_conformal(c: _Checker, cal: Any, k: int) -> None:
    c.need(isinstance(cal, dict), "conformal", cal, "expected a mapping")
    a = cal.get("default_alpha", 0.1)
    c.need(_is_num(a) and 0 < a < 1, "conformal.default_alpha", a, "alpha is a miscoverage in (0, 1)")
    score = cal.get("score")
    if score in ("mondrian", "aps"):
        strata = cal.get("strata")
        want = ("0", "1") if score == "mondrian" else ("aps", "raps")
        c.need(isinstance(strata, dict) and all(w in strata for w in want), "conformal.strata", strata,
               f"expected strata {', '.join(want)}")
        for w in want:
            _check_stratum(c, strata[w], f"conformal.strata.{w}")
    elif score == "mondrian_per_label":
        labels, classes = cal.get("labels"), cal.get("classes")
        c.need(isinstance(classes, list) and len(classes) == k, "conformal.classes", classes,
               f"expected the {k} class names")
        c.need(isinstance(labels, dict) and all(n in labels for n in classes), "conformal.labels", labels,
               "expected a calibration per finding")
        for n in classes:
            for w in ("0", "1"):
                _check_stratum(c, (labels[n] or {}).get(w), f"conformal.labels.{n}.{w}")
    else:
        raise c.fail("conformal.score", score, "expected mondrian, aps or mondrian_per_label")


def _check_ood(c: _Checker, ood: Any) -> None:
    c.need(isinstance(ood, dict), "ood", ood, "expected a mapping")
    c.need(_is_num(ood.get("threshold")), "ood.threshold", ood.get("threshold"),
           "the out-of-distribution threshold is a finite number")
    comps = ood.get("components")
    if comps is None:  # a single Gaussian (bundles before the multi-layer model)
        _check_gaussian(c, ood, "ood")
    else:
        c.need(isinstance(comps, list) and bool(comps), "ood.components", comps, "expected a list of components")
        for i, comp in enumerate(comps):
            where = f"ood.components[{i}]"
            c.need(isinstance(comp, dict), where, comp, "expected a mapping")
            _check_gaussian(c, comp, where)
            c.need(_is_num(comp.get("center")), f"{where}.center", comp.get("center"), "expected a finite number")
            sc = comp.get("scale")
            c.need(_is_num(sc) and sc > 0, f"{where}.scale", sc, "a scale is a positive finite number")
    q = ood.get("threshold_quantile", 0.95)
    c.need(_is_prob(q), "ood.threshold_quantile", q, "a quantile is in [0, 1]")


def _check_gaussian(c: _Checker, g: dict[str, Any], at: str) -> None:
    """One stored Gaussian of the OOD model: dimension, rank, means, eigenvectors, variances."""
    dim, rank = g.get("dim"), g.get("rank")
    c.need(_is_int(dim) and dim > 0, f"{at}.dim", dim, "expected a positive feature dimension")
    c.need(_is_int(rank) and 0 < rank <= max(dim, 1), f"{at}.rank", rank, f"expected 1 to dim ({dim})")
    for key, rows, cols in (("means", None, dim), ("eigvecs", rank, dim)):
        v = g.get(key)
        c.need(isinstance(v, list) and bool(v) and (rows is None or len(v) == rows)
               and all(isinstance(r, list) and len(r) == cols for r in v), f"{at}.{key}", v,
               f"expected {'one row per class' if rows is None else f'{rows} rows'} of {cols} numbers")
        c.numbers(v, f"{at}.{key}", "out-of-distribution numbers are finite")
    lam = g.get("eigvals")
    c.need(isinstance(lam, list) and len(lam) == rank, f"{at}.eigvals", lam, f"expected {rank} variances")
    c.numbers(lam, f"{at}.eigvals", "out-of-distribution numbers are finite")
    c.need(all(v > 0 for v in lam), f"{at}.eigvals", lam, "variances are > 0")
    s2 = g.get("residual_var")
    c.need(_is_num(s2) and s2 > 0, f"{at}.residual_var", s2, "a variance is a positive finite number")
