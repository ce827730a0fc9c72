"""Split-conformal prediction sets, calibrated on the validation split and stored as numbers.

Scores (larger = less conforming) and the sets built from them:

- ``binary``: Mondrian (class-conditional) split conformal. For each class ``c`` the score of an
  item labelled ``c`` is ``1 - p_c``; the set holds every class ``c`` whose score is at most the
  ``c``-th quantile, so coverage holds within each true class (positives and negatives alike).
- ``multiclass``: APS (cumulative probability mass down to and including the class) and RAPS
  (APS plus ``lam * max(0, rank - k_reg)``), deterministic (no random tie-breaking, so a served
  model answers the same image the same way); the set is ``{y : score(x, y) <= q}``. Coverage is
  marginal: it holds on average over classes, and a rare class may be covered less.
- ``multiclass`` with ``mondrian=True`` (recipe ``evaluation.conformal: mondrian``): per class
  ``c`` the score ``1 - p_c`` of the validation items of class ``c`` and its own quantile, so
  coverage holds within each true class, and sets stay narrow where the model is sure (a class
  with fewer than ``1/alpha - 1`` validation items is always in the set: too few to exclude it).
- ``multilabel``: each finding is a binary problem with its own Mondrian calibration.

Multiclass sets are never empty (the likeliest class is always in; coverage can only rise).
Binary and per-finding sets may be empty: neither class conforms to what was seen on validation,
which is itself a reason to refer (forcing a class in would over-cover at large ``alpha``). ``alpha`` is chosen at prediction time: the bundle keeps the calibration scores of each
stratum (all of them when few, else 1,001 order statistics), and :func:`conformal_quantile`
returns the finite-sample ``ceil((n + 1)(1 - alpha))``-th smallest score (rounded up on the grid,
which is conservative).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from medattn.errors import ConfigError

__all__ = [
    "fit_conformal", "conformal_quantile", "prediction_sets", "set_membership", "coverage_stats",
    "aps_scores", "per_class_coverage", "DEFAULT_ALPHA", "MAX_STORED",
]

DEFAULT_ALPHA = 0.1
MAX_STORED = 1001
"""At most this many numbers are kept per stratum (order statistics on an even grid)."""
_RAPS = {"lam": 0.01, "k_reg": 1}


def _compact(scores: np.ndarray) -> dict[str, Any]:
    """Sorted scores of one stratum, or ``MAX_STORED`` evenly spaced order statistics."""
    s = np.sort(np.asarray(scores, dtype=np.float64))
    n = int(s.size)
    if n > MAX_STORED:
        idx = np.ceil(np.linspace(0, 1, MAX_STORED) * n).astype(int).clip(1, n) - 1
        return {"n": n, "grid": True, "scores": [round(float(v), 7) for v in s[idx]]}
    return {"n": n, "grid": False, "scores": [round(float(v), 7) for v in s]}


def conformal_quantile(stratum: dict[str, Any], alpha: float) -> float:
    """The split-conformal threshold of one stratum at miscoverage ``alpha``.

    Returns ``inf`` (every class admitted) when the stratum has too few items for ``alpha``.
    """
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be between 0 and 1 (exclusive), got {alpha}")
    n, scores = int(stratum["n"]), stratum["scores"]
    rank = math.ceil((n + 1) * (1 - alpha))  # 1-based rank among n calibration scores
    if n == 0 or rank > n:
        return math.inf
    if not stratum.get("grid"):
        return float(scores[rank - 1])
    pos = math.ceil(rank / n * (len(scores) - 1) - 1e-9)  # grid point at or above that rank
    return float(scores[min(pos, len(scores) - 1)])


def aps_scores(probs: np.ndarray, lam: float = 0.0, k_reg: int = 0) -> np.ndarray:
    """APS/RAPS score of every class of every item (``N×K``): the probability mass of the classes
    ranked at or above it, plus ``lam * max(0, rank - k_reg)`` (rank 1 = likeliest)."""
    p = np.asarray(probs, dtype=np.float64)
    order = np.argsort(-p, axis=1, kind="stable")
    sorted_p = np.take_along_axis(p, order, 1)
    cum = np.cumsum(sorted_p, axis=1)
    ranks = np.arange(1, p.shape[1] + 1)[None, :]
    cum = cum + lam * np.maximum(0, ranks - k_reg)
    out = np.empty_like(cum)
    np.put_along_axis(out, order, cum, 1)
    return out


def _binary_table(p1: np.ndarray) -> np.ndarray:
    p1 = np.asarray(p1, dtype=np.float64).reshape(-1)
    return np.stack([p1, 1 - p1], 1)  # score of class 0 is 1 - p0 = p1; of class 1 is 1 - p1


def fit_conformal(task: str, y: np.ndarray, prob: np.ndarray, class_names: list[str], *,
                  mondrian: bool = False) -> dict[str, Any]:
    """Calibration numbers from validation labels and probabilities (JSON-able).

    Args:
        task: ``binary`` (``prob`` = positive-class probability, ``N``), ``multiclass``
            (``N×K`` softmax) or ``multilabel`` (``N×K`` sigmoids, ``y`` ``N×K`` in {0, 1}).
        y: validation labels.
        prob: validation probabilities of the model as served (same TTA).
        class_names: classes (findings) in output order.
        mondrian: multiclass: class-conditional (Mondrian) sets instead of APS/RAPS (binary and
            multilabel are always class-conditional).
    """
    y = np.asarray(y)
    prob = np.asarray(prob, dtype=np.float64)
    if len(y) != len(prob) or len(y) == 0:
        raise ConfigError(f"conformal calibration needs matching labels and probabilities, got {len(y)} and {len(prob)}")
    doc: dict[str, Any] = {"method": "split", "calibrated_on": "valid", "n": int(len(y)),
                           "default_alpha": DEFAULT_ALPHA, "classes": list(class_names)}
    if task == "binary":
        table = _binary_table(prob)
        y = y.astype(int).reshape(-1)
        doc.update(score="mondrian", strata={str(c): _compact(table[y == c, c]) for c in (0, 1)})
    elif task == "multiclass" and mondrian:
        y = y.astype(int).reshape(-1)
        doc.update(score="mondrian_multiclass",
                   strata={str(c): _compact(1 - prob[y == c, c]) for c in range(len(class_names))})
    elif task == "multiclass":
        y = y.astype(int).reshape(-1)
        rows = np.arange(len(y))
        doc.update(score="aps", strata={"aps": _compact(aps_scores(prob)[rows, y]),
                                        "raps": _compact(aps_scores(prob, **_RAPS)[rows, y])}, raps=dict(_RAPS))
    elif task == "multilabel":
        labels = {}
        for k, name in enumerate(class_names):
            t, yk = _binary_table(prob[:, k]), y[:, k].astype(int)
            labels[name] = {str(c): _compact(t[yk == c, c]) for c in (0, 1)}
        doc.update(score="mondrian_per_label", labels=labels)
    else:
        raise ConfigError(f"conformal sets are for classification; task '{task}' has none")
    return doc


def set_membership(cal: dict[str, Any], prob: np.ndarray, alpha: float | None = None,
                   method: str | None = None) -> np.ndarray:
    """Boolean membership of each class in each item's set.

    Returns ``N×2`` (binary: [class 0, class 1]), ``N×K`` (multiclass) or ``N×K×2``
    (multilabel: [absent, present] per finding).
    """
    a = float(cal.get("default_alpha", DEFAULT_ALPHA) if alpha is None else alpha)
    prob = np.asarray(prob, dtype=np.float64)
    score = cal["score"]
    if score == "mondrian":
        return _mondrian(cal["strata"], prob.reshape(-1), a)
    if score == "mondrian_multiclass":
        k = prob.shape[1]
        q = np.array([conformal_quantile(cal["strata"][str(c)], a) for c in range(k)])
        keep = (1 - prob) <= q[None, :] + 1e-12
        keep[np.arange(len(prob)), prob.argmax(1)] = True  # never empty
        return keep
    if score == "aps":
        m = (method or "aps").lower()
        if m not in ("aps", "raps"):
            raise ConfigError(f"conformal method '{method}' is not one of aps, raps")
        kw = cal.get("raps", _RAPS) if m == "raps" else {}
        s = aps_scores(prob, **kw)
        keep = s <= conformal_quantile(cal["strata"][m], a) + 1e-12
        keep[np.arange(len(prob)), prob.argmax(1)] = True  # never empty
        return keep
    if score == "mondrian_per_label":
        return np.stack([_mondrian(cal["labels"][n], prob[:, k], a) for k, n in enumerate(cal["classes"])], 1)
    raise ConfigError(f"unknown conformal score '{score}' in the bundle")


def _mondrian(strata: dict[str, Any], p1: np.ndarray, alpha: float) -> np.ndarray:
    table = _binary_table(p1)
    q = np.array([conformal_quantile(strata[str(c)], alpha) for c in (0, 1)])
    return table <= q[None, :] + 1e-12


def prediction_sets(cal: dict[str, Any], prob: np.ndarray, alpha: float | None = None,
                    method: str | None = None) -> list[Any]:
    """Per item: the list of class names in its set (multilabel: ``{finding: [states]}``,
    states ``absent``/``present``)."""
    keep = set_membership(cal, prob, alpha, method)
    names = cal["classes"]
    if keep.ndim == 3:
        return [{n: [s for s, k in zip(("absent", "present"), row[j], strict=True) if k] for j, n in enumerate(names)}
                for row in keep]
    two = names if keep.shape[1] == len(names) else ["negative", "positive"]
    return [[two[j] for j in np.flatnonzero(row)] for row in keep]


def coverage_stats(cal: dict[str, Any], y: np.ndarray, prob: np.ndarray, alpha: float,
                   method: str | None = None) -> dict[str, np.ndarray]:
    """Per item: ``covered`` (true class in the set; multilabel: share of findings whose true
    state is in the set) and ``size`` (classes in the set; multilabel: mean per finding)."""
    keep = set_membership(cal, prob, alpha, method)
    y = np.asarray(y).astype(int)
    if keep.ndim == 3:
        hit = np.take_along_axis(keep, y[..., None], 2)[..., 0]
        return {"covered": hit.mean(1), "size": keep.sum(2).mean(1)}
    return {"covered": keep[np.arange(len(y)), y.reshape(-1)].astype(float), "size": keep.sum(1).astype(float)}


def per_class_coverage(cal: dict[str, Any], y: np.ndarray, prob: np.ndarray, alpha: float,
                       method: str | None = None) -> dict[int, np.ndarray]:
    """Per true class (binary/multiclass): the ``covered`` flags of its items (for per-class coverage
    with CIs); multilabel has none."""
    st = coverage_stats(cal, y, prob, alpha, method)
    y = np.asarray(y)
    if y.ndim > 1:
        return {}
    y = y.astype(int)
    return {int(c): st["covered"][y == c] for c in np.unique(y)}
