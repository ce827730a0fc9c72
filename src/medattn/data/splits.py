"""Stratified group splits: no patient on two sides, class balance kept, official splits respected.

The result is the ``split.csv`` contract read by training and evaluation: columns ``file, split,
group, label`` (plus ``fold`` with k-fold). Groups are patients/slides when the format knows
them, otherwise each file is its own group.

How ratios are met: scikit-learn's :class:`~sklearn.model_selection.StratifiedGroupKFold` cuts
the groups into ``resolution`` (default 20) class-balanced folds; whole folds go to test, valid
and train in proportion to the ratios, so a 70/15/15 split is met to within one fold of groups.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medattn.errors import ConfigError, DataError

__all__ = ["make_split", "scan_grouped", "fold_view", "write_split_csv", "read_split_csv", "split_summary", "SPLIT_COLUMNS"]

SPLIT_COLUMNS = ("file", "split", "group", "label")
_VALID_SPLITS = ("train", "valid", "test")


def _groups(table: Any) -> np.ndarray:
    files = table["file"].astype(str)
    if "group" not in table.columns:
        return files.to_numpy()
    g = table["group"].astype(object)
    return g.where(g.notna() & (g.astype(str) != ""), files).astype(str).to_numpy()


def _strata(table: Any) -> np.ndarray:
    """One stratum per row: the class; multi-label rows use their rarest finding (or 'none')."""
    findings = table.attrs.get("findings")
    if findings and all(f in table.columns for f in findings):
        m = table[list(findings)].to_numpy()
        freq = m.sum(0)
        order = np.argsort(freq, kind="stable")
        out = np.full(len(table), "none", dtype=object)
        for j in order[::-1]:  # rarest last, so it wins
            out[m[:, j] > 0] = findings[j]
        return out.astype(str)
    if "label" in table.columns:
        return table["label"].astype(str).fillna("").to_numpy()
    return np.zeros(len(table), dtype=str)


def _group_folds(idx: np.ndarray, strata: np.ndarray, groups: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, int]:
    """Fold id of each row of ``idx`` (whole groups per fold, strata balanced) and the number of
    folds actually used (at most the size of the largest stratum)."""
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    fold = np.zeros(len(idx), np.int64)
    y = strata[idx]
    n = int(min(n, np.unique(y, return_counts=True)[1].max()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "least populated class has only k members" is expected
        if n >= 2:
            cv = StratifiedGroupKFold(n_splits=n, shuffle=True, random_state=seed)
            parts = cv.split(np.zeros(len(idx)), y, groups[idx])
        else:  # every stratum is a single row: plain shuffled group folds
            n = int(min(len(np.unique(groups[idx])), 20))
            parts = GroupKFold(n_splits=n, shuffle=True, random_state=seed).split(np.zeros(len(idx)), y, groups[idx])
        for k, (_, te) in enumerate(parts):
            fold[te] = k
    return fold, n


def _carve(idx: np.ndarray, strata: np.ndarray, groups: np.ndarray, fractions: Sequence[float],
           names: Sequence[str], seed: int, resolution: int) -> dict[str, np.ndarray]:
    """Split rows ``idx`` into ``names`` with ``fractions`` of the groups (whole folds each)."""
    n_groups = len(np.unique(groups[idx]))
    if n_groups < len(names):
        raise DataError(f"only {n_groups} group(s) to split into {list(names)}; need at least one group per split "
                        "(is the group column right?)")
    fold, n = _group_folds(idx, strata, groups, int(min(resolution, n_groups)), seed)
    want = np.asarray(fractions, float) / float(sum(fractions)) * n
    counts = np.maximum(np.floor(want).astype(int), [1 if f > 0 else 0 for f in fractions])
    while counts.sum() < n:  # hand out the remaining folds by largest shortfall
        counts[int(np.argmax(want - counts))] += 1
    while counts.sum() > n:
        counts[int(np.argmax(counts))] -= 1
    out, start = {}, 0
    for name, c in zip(names, counts, strict=True):
        out[name] = idx[(fold >= start) & (fold < start + c)]
        start += c
    return out


def make_split(
    table: Any,
    *,
    ratios: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    folds: int | None = None,
    respect_official: bool = True,
    resolution: int = 20,
) -> Any:
    """Assign every row of a scanner table to train/valid/test by group.

    Args:
        table: scanner output (``file``, optional ``group``, ``label``, ``split``).
        ratios: train, valid, test fractions (normalised); with ``folds`` only the test fraction
            is used.
        seed: shuffling seed (same seed, same split).
        folds: k-fold cross-validation: test is held out as usual, the rest gets ``fold`` 0..k-1
            (all ``split == "train"``; :func:`fold_view` turns fold i into the validation set).
        respect_official: keep the table's own ``split`` values (PCam, CXR14 lists); a missing
            valid split is carved from the official train split by group.
        resolution: number of group folds used to meet the ratios.

    Returns:
        DataFrame ``file, split, group, label`` (+ ``fold``), in the table's row order.
    """
    import pandas as pd

    r = [float(x) for x in ratios]
    if len(r) != 3 or min(r) < 0 or r[0] <= 0 or sum(r) <= 0:
        raise ConfigError(f"ratios must be three non-negative numbers train,valid,test with train > 0; got {list(ratios)}")
    if folds is not None and folds < 2:
        raise ConfigError(f"folds must be >= 2, got {folds}")
    if len(table) == 0:
        raise DataError("the data table is empty; nothing to split")
    groups, strata = _groups(table), _strata(table)
    split = np.full(len(table), None, dtype=object)
    if respect_official and "split" in table.columns:
        off = table["split"].astype(object).where(table["split"].notna(), None).to_numpy()
        off = np.array([{"val": "valid", "validation": "valid"}.get(s, s) if s else None for s in off], dtype=object)
        split[:] = off
        crossing = pd.Series(off[off != None]).groupby(groups[off != None]).nunique()  # noqa: E711
        if (crossing > 1).any():
            warnings.warn(f"{int((crossing > 1).sum())} group(s) cross the official splits; kept as published",
                          stacklevel=2)
    free = np.flatnonzero(split == None)  # noqa: E711
    have = set(split[split != None])  # noqa: E711
    if len(free):
        names = [n for n, f in zip(_VALID_SPLITS, r, strict=True) if f > 0 and n not in have]
        fr = [f for n, f in zip(_VALID_SPLITS, r, strict=True) if f > 0 and n not in have]
        if folds is not None:
            names, fr = [n for n in names if n != "valid"], [f for n, f in zip(names, fr, strict=True) if n != "valid"]
        if "train" not in names:
            names, fr = ["train", *names], [r[0], *fr]
        for name, rows in _carve(free, strata, groups, fr, names, seed, resolution).items():
            split[rows] = name
    elif "valid" not in have and "train" in have and r[1] > 0 and folds is None:
        tr = np.flatnonzero(split == "train")
        part = _carve(tr, strata, groups, [r[0], r[1]], ["train", "valid"], seed, resolution)
        split[part["valid"]] = "valid"
    out = pd.DataFrame({
        "file": table["file"].astype(str).to_numpy(),
        "split": split,
        "group": groups,
        "label": table["label"].to_numpy() if "label" in table.columns else "",
    })
    if folds is not None:
        tr = np.flatnonzero(out["split"].to_numpy() == "train")
        fold = np.full(len(out), -1, np.int64)
        fold[tr], used = _group_folds(tr, strata, groups, min(folds, len(np.unique(groups[tr]))), seed + 1)
        if used < folds:
            raise DataError(f"cannot make {folds} folds: the training part has too few groups or items per class "
                            f"(at most {used}); use fewer folds")
        out["fold"] = fold
    out.attrs = {"format": table.attrs.get("format"), "classes": table.attrs.get("classes"), "seed": seed,
                 "ratios": r, "folds": folds}
    return out


def fold_view(split_table: Any, k: int) -> Any:
    """Copy of a k-fold split table where fold ``k`` is ``valid`` and the other folds ``train``."""
    if "fold" not in split_table.columns:
        raise ConfigError("this split table has no 'fold' column; make it with folds=K (`medattn split --folds K`)")
    out = split_table.copy()
    in_cv = out["fold"] >= 0
    if not (out.loc[in_cv, "fold"] == k).any():
        raise ConfigError(f"fold {k} does not exist; folds are 0..{int(out['fold'].max())}")
    out.loc[in_cv, "split"] = np.where(out.loc[in_cv, "fold"] == k, "valid", "train")
    return out


def split_summary(split_table: Any) -> Any:
    """Items, groups and class counts per split (a small DataFrame)."""
    g = split_table.groupby("split", sort=False)
    out = g.agg(items=("file", "size"), groups=("group", "nunique"))
    counts = split_table.assign(label=split_table["label"].astype(str)).pivot_table(
        index="split", columns="label", values="file", aggfunc="count", fill_value=0)
    if counts.shape[1] <= 20:
        out = out.join(counts.add_prefix("label="))
    return out.reindex([s for s in _VALID_SPLITS if s in out.index])


def write_split_csv(split_table: Any, path: str | Path) -> Path:
    """Write ``split.csv`` atomically (columns ``file, split, group, label`` [+ ``fold``])."""
    from medattn.io import atomic_write_text

    cols = list(SPLIT_COLUMNS) + (["fold"] if "fold" in split_table.columns else [])
    return atomic_write_text(path, split_table[cols].to_csv(index=False))


def read_split_csv(path: str | Path) -> Any:
    """Read and check a ``split.csv``: required columns, known split names, unique files."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise DataError(f"split file '{p}' not found; create it with `medattn split DATA --out {p.name}`")
    try:
        df = pd.read_csv(p, dtype={"file": str, "split": str, "group": str, "label": str}, keep_default_na=False)
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"cannot read split file '{p}' ({exc})") from None
    missing = [c for c in SPLIT_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"split file '{p}' lacks column(s) {missing}; expected {', '.join(SPLIT_COLUMNS)}")
    bad = sorted(set(df["split"]) - set(_VALID_SPLITS))
    if bad:
        raise DataError(f"split file '{p}' has unknown split value(s) {bad}; use train, valid, test")
    dup = df["file"].duplicated()
    if dup.any():
        raise DataError(f"split file '{p}' lists '{df.loc[dup, 'file'].iloc[0]}' more than once; each file once")
    return df


def scan_grouped(root: str | Path, fmt: str | None = None, group_pattern: str | None = None) -> Any:
    """The format's item table, with groups named by ``group_pattern`` for class-folder data.

    ``group_pattern`` is the regular expression ``medattn split | audit | overview --group-pattern``
    and the recipe's ``data.options.group_pattern`` take (see :func:`~medattn.data.formats.scan_folders`).

    Raises:
        ConfigError: a pattern given for a format that names its groups itself.
    """
    from medattn.data.formats import detect_format, scan

    if group_pattern is None:
        return scan(root, fmt)
    fmt = fmt or detect_format(root)
    if fmt != "folders":
        raise ConfigError(f"--group-pattern applies to class-folder data; '{root}' is format '{fmt}', whose "
                          "scanner names the groups itself (drop --group-pattern)")
    return scan(root, fmt, group_pattern=group_pattern)
