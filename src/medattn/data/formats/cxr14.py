"""NIH ChestX-ray14: ``Data_Entry_2017*.csv`` (plain or .gz) + an image folder.

The 14 findings become a multi-hot vector in :data:`FINDINGS` order ("No Finding" = all zeros).
Images are found anywhere under the root by file name (folders whose name contains "mask"
are skipped: they hold lesion masks, not X-rays); rows of the CSV whose image is absent
are counted in ``table.attrs["absent"]``, not fatal. When ``train_val_list.txt`` /
``test_list.txt`` exist, their split is used (``train`` / ``test``); otherwise ``split`` is
empty and :mod:`medattn.data.splits` splits by patient.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from medattn.data.formats.table import TableDataset, require_columns
from medattn.data.images import IMAGE_EXTENSIONS, is_junk
from medattn.errors import DataError

__all__ = ["FINDINGS", "find_data_entry", "scan_cxr14", "read_bbox_list", "CXR14Dataset"]

FINDINGS = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)
_ALIASES = {"pleural thickening": "Pleural_Thickening", "pleural_thickening": "Pleural_Thickening"}


def find_data_entry(root: str | Path) -> Path:
    """The ``Data_Entry_2017*.csv[.gz]`` file under ``root`` (top level first, then anywhere)."""
    r = Path(root)
    if r.is_file():
        return r
    for pattern in ("Data_Entry_2017*.csv", "Data_Entry_2017*.csv.gz"):
        hits = sorted(r.glob(pattern)) or sorted(r.rglob(pattern))
        if hits:
            return hits[0]
    raise DataError(f"no Data_Entry_2017*.csv(.gz) found under '{r}'; download it with the images")


def _finding(name: str, csv: Path) -> str | None:
    n = name.strip()
    if not n or n == "No Finding":
        return None
    n = _ALIASES.get(n.lower(), n)
    if n not in FINDINGS:
        raise DataError(f"'{csv}' lists an unknown finding '{name}'; expected one of {FINDINGS} or 'No Finding'")
    return n


def _official_lists(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for fname, split in (("train_val_list.txt", "train"), ("test_list.txt", "test")):
        hits = sorted(root.rglob(fname))
        if hits:
            for line in hits[0].read_text().split():
                out[line.strip()] = split
    return out


def scan_cxr14(root: str | Path, csv: str | Path | None = None) -> Any:
    """Table ``file, image_index, group (patient), split, label, <14 findings>, view, age, sex``.

    ``label`` is the ``|``-joined finding names (empty for "No Finding"). ``table.attrs`` holds
    ``findings``, ``absent`` (CSV rows without an image) and ``unlisted`` (images not in the CSV).
    """
    import pandas as pd

    r = Path(root)
    if not r.is_dir():
        raise DataError(f"ChestX-ray14 folder '{r}' not found")
    entry = Path(csv) if csv is not None else find_data_entry(r)
    try:
        meta = pd.read_csv(entry, dtype={"Image Index": str, "Patient ID": str})
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"cannot read '{entry}' as CSV ({exc}); check the file") from None
    require_columns(meta, ["Image Index", "Finding Labels", "Patient ID"], f"'{entry}'")
    meta = meta.drop_duplicates("Image Index").set_index("Image Index")
    files = [p for p in sorted(r.rglob("*")) if p.suffix.lower() in IMAGE_EXTENSIONS and not is_junk(p)
             and not any("mask" in part.lower() for part in p.relative_to(r).parts[:-1])]
    official = _official_lists(r)
    rows, unlisted, seen = [], 0, set()
    for p in files:
        if p.name not in meta.index:
            unlisted += 1
            continue
        m = meta.loc[p.name]
        found = [f for f in (_finding(x, entry) for x in str(m["Finding Labels"]).split("|")) if f]
        row = {"file": p.relative_to(r).as_posix(), "image_index": p.name,
               "group": str(m["Patient ID"]).strip(), "split": official.get(p.name),
               "label": "|".join(sorted(found, key=FINDINGS.index))}
        row.update({f: int(f in found) for f in FINDINGS})
        for src, dst in (("View Position", "view"), ("Patient Age", "age"), ("Patient Gender", "sex")):
            if src in m.index:
                row[dst] = m[src]
        rows.append(row)
        seen.add(p.name)
    if not rows:
        raise DataError(f"none of the images under '{r}' is listed in '{entry}'; check the folder and the CSV")
    df = pd.DataFrame(rows)
    df.attrs.update(findings=list(FINDINGS), classes=list(FINDINGS), absent=int(len(meta) - len(seen)),
                    unlisted=unlisted, data_entry=str(entry), format="cxr14")
    return df


def read_bbox_list(path: str | Path) -> Any:
    """``BBox_List_2017.csv[.gz]`` as a table ``image_index, finding, x, y, w, h``."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise DataError(f"bounding-box list '{p}' not found")
    raw = pd.read_csv(p)
    if raw.shape[1] < 6:
        raise DataError(f"'{p}' has {raw.shape[1]} columns; expected Image Index, Finding Label, x, y, w, h")
    df = raw.iloc[:, :6].copy()
    df.columns = ["image_index", "finding", "x", "y", "w", "h"]
    return df


class CXR14Dataset(TableDataset):
    """ChestX-ray14 as ``(image, 14-float multi-hot)``; ``groups()`` are patient ids.

    Args:
        root: folder with the CSV and the images (any sub-folders).
        table: optional pre-filtered :func:`scan_cxr14` table.
        mode: ``L`` (one channel) or ``RGB`` (grey replicated, for ImageNet backbones).
        transform, on_bad_file: see :class:`TableDataset`.
    """

    def __init__(self, root: str | Path, table: Any | None = None, *,
                 transform: Callable[..., Any] | None = None, mode: Literal["RGB", "L"] = "RGB",
                 on_bad_file: Literal["error", "skip"] = "error") -> None:
        super().__init__(root, scan_cxr14(root) if table is None else table, task="multilabel",
                         transform=transform, mode=mode, label_columns=FINDINGS,
                         class_names=FINDINGS, on_bad_file=on_bad_file)
