"""Bootstrap confidence intervals that resample patients (groups) when they exist."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["bootstrap_ci", "group_resample_indices"]


def group_resample_indices(
    groups: Sequence[object] | np.ndarray | None, n_items: int, n_boot: int, seed: int
) -> list[np.ndarray]:
    """Index arrays of ``n_boot`` bootstrap samples.

    With ``groups`` each sample draws whole groups with replacement (all items of a drawn
    patient come along); otherwise items are drawn.
    """
    rng = np.random.default_rng(seed)
    if groups is None:
        return [rng.integers(0, n_items, n_items) for _ in range(n_boot)]
    g = np.asarray(groups)
    uniq, inv = np.unique(g, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    counts = np.bincount(inv, minlength=len(uniq))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(uniq), len(uniq))
        # the members of every drawn group, concatenated without a Python loop over groups
        lengths = counts[pick]
        first = np.cumsum(lengths) - lengths
        pos = np.arange(lengths.sum()) - np.repeat(first - starts[pick], lengths)
        out.append(order[pos])
    return out


def bootstrap_ci(
    fn: Callable[[np.ndarray], dict[str, float]],
    n_items: int,
    groups: Sequence[object] | np.ndarray | None = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Percentile bootstrap CIs of every metric ``fn(indices)`` returns.

    Args:
        fn: maps an index array (a resample of the items) to ``{metric: value}``.
        n_items: number of items.
        groups: per-item group (patient) ids; resampled as whole groups when given.
        n_boot: number of resamples.
        alpha: 0.05 for 95% intervals.

    Returns:
        ``{metric: {"value", "ci_low", "ci_high", "n_boot"}}``; the point value comes from all items.
    """
    from medattn.progress import track

    point = fn(np.arange(n_items))
    samples: dict[str, list[float]] = {k: [] for k in point}
    with track(f"bootstrap CIs ({n_boot} resamples)", n_boot) as tick:
        for idx in group_resample_indices(groups, n_items, n_boot, seed):
            vals = fn(idx)
            for k in point:
                samples[k].append(vals.get(k, float("nan")))
            tick()
    out = {}
    for k, v in point.items():
        arr = np.asarray(samples[k], dtype=np.float64)
        arr = arr[np.isfinite(arr)]
        lo, hi = (np.quantile(arr, [alpha / 2, 1 - alpha / 2]) if len(arr) else (np.nan, np.nan))
        out[k] = {"value": float(v), "ci_low": float(lo), "ci_high": float(hi), "n_boot": int(len(arr))}
    return out
