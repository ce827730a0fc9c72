"""A CSV manifest: one row per image with a path, a label (or labels), optional group and split.

Column names are configurable; by default ``path`` (or ``file``/``image``), ``label`` (a class
name or index), ``labels`` (``|``-separated names, multi-label), ``group`` (or
``patient``/``patient_id``) and ``split``. Paths are relative to the CSV's folder unless absolute.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from medattn.data.formats.table import TableDataset
from medattn.errors import DataError

__all__ = ["scan_csv", "CSVDataset"]

_PATH_COLS = ("path", "file", "filename", "image", "image_path")
_GROUP_COLS = ("group", "patient", "patient_id", "subject", "slide")
_SPLITS = {"train", "valid", "val", "validation", "test"}


def _pick(columns: Sequence[str], wanted: str | None, candidates: Sequence[str], csv: Path, what: str) -> str | None:
    if wanted is not None:
        if wanted not in columns:
            raise DataError(f"'{csv}' has no column '{wanted}' ({what}); columns: {list(columns)}")
        return wanted
    return next((c for c in candidates if c in columns), None)


def scan_csv(
    csv: str | Path,
    *,
    path_column: str | None = None,
    label_column: str | None = None,
    labels_column: str | None = None,
    group_column: str | None = None,
    split_column: str | None = None,
    classes: Sequence[str] | None = None,
) -> Any:
    """Normalised table ``file, label, class_name | <one column per label>, group, split``.

    Single-label: ``label`` becomes the class index in ``classes`` (default: sorted distinct
    values) and ``class_name`` keeps the name. Multi-label (``labels_column``): one 0/1 column per
    label name and ``label`` = the ``|``-joined names. ``table.attrs["classes"]`` gives the order.
    """
    import pandas as pd

    p = Path(csv)
    if not p.is_file():
        raise DataError(f"manifest '{p}' not found")
    try:
        raw = pd.read_csv(p, dtype=str, keep_default_na=False)
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"cannot read manifest '{p}' as CSV ({exc})") from None
    cols = list(raw.columns)
    pc = _pick(cols, path_column, _PATH_COLS, p, "image path")
    if pc is None:
        raise DataError(f"manifest '{p}' needs an image path column ({'/'.join(_PATH_COLS)}); columns: {cols}")
    lc = _pick(cols, label_column, ("label", "class", "target"), p, "label") if labels_column is None else None
    mc = _pick(cols, labels_column, ("labels",), p, "labels") if lc is None else None
    gc = _pick(cols, group_column, _GROUP_COLS, p, "group")
    sc = _pick(cols, split_column, ("split",), p, "split")
    df = pd.DataFrame({"file": raw[pc].str.strip()})
    if (df["file"] == "").any():
        raise DataError(f"manifest '{p}' has empty paths in column '{pc}' (row {int((df['file'] == '').idxmax()) + 2})")
    df["group"] = raw[gc].where(raw[gc] != "", None) if gc else None
    if sc:
        sp = raw[sc].str.strip().str.lower().replace({"val": "valid", "validation": "valid"})
        bad = sorted(set(sp) - _SPLITS - {""})
        if bad:
            raise DataError(f"manifest '{p}' column '{sc}' has unknown split(s) {bad}; use train, valid, test")
        df["split"] = sp.where(sp != "", None)
    else:
        df["split"] = None
    if lc is not None:
        names = list(classes) if classes is not None else sorted(set(raw[lc]) - {""})
        unknown = sorted(set(raw[lc]) - set(names))
        if unknown:
            raise DataError(f"manifest '{p}' column '{lc}' has value(s) {unknown[:5]} not in the classes {names}")
        df["class_name"] = raw[lc]
        df["label"] = raw[lc].map({n: i for i, n in enumerate(names)}).astype(int)
        task = "classification"
    elif mc is not None:
        split_names = raw[mc].str.split("|").apply(lambda xs: [x.strip() for x in xs if x.strip()])
        names = list(classes) if classes is not None else sorted({n for xs in split_names for n in xs})
        for n in names:
            df[n] = split_names.apply(lambda xs, n=n: int(n in xs))
        df["label"] = raw[mc]
        task = "multilabel"
    else:
        names, task = [], "unlabelled"
        df["label"] = ""
    df.attrs.update(classes=names, task=task, format="csv", manifest=str(p))
    return df


class CSVDataset(TableDataset):
    """Images listed in a CSV manifest: ``(image, class index)`` or ``(image, multi-hot)``.

    Args:
        csv: the manifest; paths are relative to its folder (``root`` overrides).
        root: base folder of relative paths.
        table: optional pre-filtered :func:`scan_csv` table.
        transform, mode, on_bad_file: see :class:`TableDataset`; other keywords go to :func:`scan_csv`.
    """

    def __init__(self, csv: str | Path, *, root: str | Path | None = None, table: Any | None = None,
                 transform: Callable[..., Any] | None = None, mode: Literal["RGB", "L"] = "RGB",
                 on_bad_file: Literal["error", "skip"] = "error", **scan_kw: Any) -> None:
        full = scan_csv(csv, **scan_kw) if table is None else table
        classes = full.attrs.get("classes", [])
        task = full.attrs.get("task", "classification")
        if task == "unlabelled":
            raise DataError(f"manifest '{csv}' has no label column; add 'label' or 'labels' or name it")
        super().__init__(Path(root) if root else Path(csv).parent, full, task=task, transform=transform,
                         mode=mode, label_columns=classes if task == "multilabel" else None,
                         class_names=classes, on_bad_file=on_bad_file)
