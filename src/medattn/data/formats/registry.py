"""One entry point for every format: detect it, scan it, open a split of it as a Dataset.

``scan(root)`` returns the format's table (file, label(s), group, split); ``open_dataset(root,
split_table=..., split="train")`` returns the matching torch Dataset restricted to the files of
that split of a ``split.csv``; ``read_item(root, file)`` gives the raw pixels (for the audit).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from medattn.data.images import IMAGE_EXTENSIONS, is_junk, read_image
from medattn.errors import ConfigError, DataError

__all__ = ["FORMATS", "detect_format", "scan", "open_dataset", "read_item", "select_split"]

FORMATS = ("pcam", "folders", "csv", "cxr14", "idc", "seg_pairs", "monuseg")


def detect_format(root: str | Path) -> str:
    """Guess the format of ``root`` from its files (see :data:`FORMATS`)."""
    from medattn.data.formats.idc import parse_idc_name
    from medattn.data.formats.seg_pairs import _IMAGE_DIRS, _MASK_DIRS

    r = Path(root)
    if r.is_file():
        if r.suffix.lower() == ".csv" and not r.name.startswith("Data_Entry_2017"):
            return "csv"
        if r.name.startswith("Data_Entry_2017"):
            return "cxr14"
        raise DataError(f"'{r}' is a file; pass a data folder or a .csv manifest")
    if not r.is_dir():
        raise DataError(f"data folder '{r}' not found")
    if any(r.glob("camelyonpatch_level_2_split_*_x.h5")):
        return "pcam"
    if any(r.glob("Data_Entry_2017*.csv*")):
        return "cxr14"
    if any((r / d).is_dir() for d in _IMAGE_DIRS) and any((r / d).is_dir() for d in _MASK_DIRS):
        return "seg_pairs"
    if any(p for p in r.rglob("*.xml") if not is_junk(p)):
        return "monuseg"
    for i, p in enumerate(r.rglob("*.png")):
        if parse_idc_name(p.name) is not None:
            return "idc"
        if i > 50:
            break
    if any(p.is_dir() for p in r.iterdir()):
        return "folders"
    if any(p.suffix.lower() in IMAGE_EXTENSIONS for p in r.iterdir()):
        raise DataError(f"'{r}' holds loose images without labels; put them in one folder per class or list them in a CSV")
    raise DataError(f"cannot tell the format of '{r}'; pass --format ({', '.join(FORMATS)})")


def scan(root: str | Path, fmt: str | None = None, **kw: Any) -> Any:
    """The format's table for ``root`` (``fmt`` auto-detected when ``None``)."""
    from medattn.data.formats import (
        csv_manifest,
        cxr14,
        folders,
        idc,
        monuseg_xml,
        pcam_h5,
        seg_pairs,
    )

    fmt = fmt or detect_format(root)
    scanners: dict[str, Callable[..., Any]] = {
        "pcam": pcam_h5.scan_pcam, "folders": folders.scan_folders, "csv": csv_manifest.scan_csv,
        "cxr14": cxr14.scan_cxr14, "idc": idc.scan_idc, "seg_pairs": seg_pairs.scan_seg_pairs,
        "monuseg": monuseg_xml.scan_monuseg,
    }
    if fmt not in scanners:
        raise ConfigError(f"unknown data format '{fmt}'; use one of {', '.join(FORMATS)}")
    df = scanners[fmt](root, **kw)
    df.attrs.setdefault("format", fmt)
    df.attrs["format"] = fmt
    return df


def select_split(table: Any, split_table: Any | None, split: str | None) -> Any:
    """Rows of ``table`` whose file is in ``split`` of ``split_table`` (a split.csv table).

    Without ``split_table`` the table's own ``split`` column is used; a split the split table
    does not list gives an empty table (callers check which splits they need). The split table's ``group``
    column, when filled, overrides the scanner's groups: the groups the split was made with are
    the ones evaluation resamples (e.g. source images given by ``group_pattern``).
    """
    if split is None:
        return table
    src = split_table if split_table is not None else table
    if "split" not in src.columns:
        raise DataError("the split table has no 'split' column; create one with `medattn split`")
    files = set(src.loc[src["split"] == split, "file"].astype(str))
    if not files and split_table is not None:  # e.g. no test split of a final model: an empty dataset
        out = table.iloc[:0]
        out.attrs = dict(table.attrs)
        return out
    if not files:
        raise DataError(f"split '{split}' has no items; splits present: {sorted(src['split'].dropna().unique())}")
    out = table[table["file"].astype(str).isin(files)]
    missing = len(files) - len(out)
    if missing:
        raise DataError(f"{missing} file(s) of split '{split}' are not in the data folder; "
                        "was split.csv made for another copy of the data?")
    if split_table is not None and "group" in split_table.columns:
        given = split_table.set_index(split_table["file"].astype(str))["group"]
        given = given[given.notna() & (given.astype(str) != "")].astype(str)
        if len(given):
            out = out.copy()
            mapped = out["file"].astype(str).map(given)
            out["group"] = mapped.where(mapped.notna(), out["group"] if "group" in out else None)
    out.attrs = dict(table.attrs)
    return out


def open_dataset(root: str | Path, fmt: str | None = None, *, split: str | None = None,
                 split_table: Any | None = None, transform: Callable[..., Any] | None = None,
                 on_bad_file: str = "error", **kw: Any) -> Any:
    """Dataset of one split of ``root`` in any format (``(image, label)`` or ``(image, mask)``)."""
    from medattn.data.formats import (
        csv_manifest,
        cxr14,
        folders,
        idc,
        monuseg_xml,
        pcam_h5,
        seg_pairs,
    )

    fmt = fmt or detect_format(root)
    if fmt == "pcam":
        if split is None:
            raise ConfigError("PCam datasets are opened one split at a time; pass split='train'|'valid'|'test'")
        idx = None
        if split_table is not None:
            files = split_table.loc[split_table["split"] == split, "file"].astype(str)
            prefix = pcam_h5.pcam_files(root, split)["x"].name + "#"
            idx = sorted(int(f.split("#")[1]) for f in files if f.startswith(prefix))
        return pcam_h5.PCamH5Dataset(root, split, transform, indices=idx, **kw)
    # folders: label indices follow the explicit class order, else the dataset's labels would disagree
    scan_kw = {k: kw[k] for k in ("classes", "class_pattern") if fmt == "folders" and kw.get(k)}
    table = select_split(scan(root, fmt, **scan_kw), split_table, split)
    common = {"transform": transform, "on_bad_file": on_bad_file}
    if fmt == "folders":
        return folders.FolderDataset(root, table, **common, **kw)
    if fmt == "idc":
        return idc.IDCDataset(root, table, **common)
    if fmt == "cxr14":
        return cxr14.CXR14Dataset(root, table, **common, **kw)
    if fmt == "seg_pairs":
        return seg_pairs.SegPairsDataset(root, table, **common, **kw)
    if fmt == "monuseg":
        return monuseg_xml.MoNuSegDataset(root, table, **common, **kw)
    return csv_manifest.CSVDataset(root, table=table, **common, **kw)


def read_item(root: str | Path, file: str) -> np.ndarray:
    """Raw ``uint8`` RGB pixels of one item (``<x.h5>#<i>`` for PCam, else an image path)."""
    r = Path(root)
    base = r.parent if r.is_file() else r
    if "#" in file and file.split("#")[0].endswith(".h5"):
        import h5py

        name, idx = file.rsplit("#", 1)
        with h5py.File(base / name, "r") as f:
            key = "x" if "x" in f else next(iter(f.keys()))
            return np.asarray(f[key][int(idx)])
    return read_image(base / file)
