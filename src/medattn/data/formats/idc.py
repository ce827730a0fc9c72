"""Breast IDC patches ``<pid>_idx5_x<X>_y<Y>_class<C>.png`` under any folder layout.

The patient id, the patch coordinates and the class are parsed from the file name (the folder
layout is ignored, so ``<pid>/<0|1>/…`` and flat folders both work). The patient is the group,
so a split by group never puts one patient's patches on both sides.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medattn.data.formats.table import TableDataset
from medattn.data.images import files_under, is_junk, read_image
from medattn.errors import DataError

__all__ = ["IDC_PATTERN", "parse_idc_name", "scan_idc", "IDCDataset", "idc_mosaic", "IDC_CLASSES"]

IDC_PATTERN = re.compile(r"^(?P<pid>[^_/]+)_idx5_x(?P<x>\d+)_y(?P<y>\d+)_class(?P<c>[01])\.png$", re.IGNORECASE)
IDC_CLASSES = ("non-IDC", "IDC")


def parse_idc_name(name: str) -> dict[str, Any] | None:
    """``{"patient", "x", "y", "label"}`` of an IDC file name, or ``None`` if it does not match."""
    m = IDC_PATTERN.match(name)
    if m is None:
        return None
    return {"patient": m["pid"], "x": int(m["x"]), "y": int(m["y"]), "label": int(m["c"])}


def scan_idc(root: str | Path) -> Any:
    """Table ``file, label, class_name, group (patient), x, y, split`` of every IDC patch.

    Files that do not follow the naming scheme are counted in ``table.attrs["ignored"]``.
    """
    import pandas as pd

    r = Path(root)
    if not r.is_dir():
        raise DataError(f"IDC folder '{r}' not found")
    rows, ignored = [], 0
    for p in files_under(r):
        info = None if is_junk(p) else parse_idc_name(p.name)
        if info is None:
            ignored += 1
            continue
        rows.append({"file": p.relative_to(r).as_posix(), "label": info["label"],
                     "class_name": IDC_CLASSES[info["label"]], "group": info["patient"],
                     "x": info["x"], "y": info["y"], "split": None})
    if not rows:
        raise DataError(f"no IDC patches '<pid>_idx5_x<X>_y<Y>_class<C>.png' found under '{r}'")
    df = pd.DataFrame(rows)
    df.attrs.update(classes=list(IDC_CLASSES), ignored=ignored, format="idc")
    return df


def idc_mosaic(root: str | Path, table: Any, patient: str, patch: int = 50, scale: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Rebuild one patient's slide from its patches' coordinates.

    Args:
        root: the IDC folder.
        table: :func:`scan_idc` output.
        patient: patient id.
        patch: patch size in pixels at the coordinates' scale (IDC: 50).
        scale: integer down-sampling of the mosaic (2 = half size).

    Returns:
        ``(mosaic uint8 H×W×3 on white, label map int8 H×W: -1 no patch, 0/1 class)``.
    """
    sub = table[table["group"].astype(str) == str(patient)]
    if sub.empty:
        raise DataError(f"patient '{patient}' has no patches in the IDC table; check the id")
    x0, y0 = int(sub["x"].min()), int(sub["y"].min())
    w = (int(sub["x"].max()) - x0 + patch) // scale
    h = (int(sub["y"].max()) - y0 + patch) // scale
    mosaic = np.full((h, w, 3), 255, np.uint8)
    labels = np.full((h, w), -1, np.int8)
    r = Path(root)
    for row in sub.itertuples():
        img = read_image(r / row.file)
        if scale > 1:
            img = img[::scale, ::scale]
        ty, tx = (row.y - y0) // scale, (row.x - x0) // scale
        hh, ww = min(img.shape[0], h - ty), min(img.shape[1], w - tx)
        mosaic[ty:ty + hh, tx:tx + ww] = img[:hh, :ww]
        labels[ty:ty + hh, tx:tx + ww] = row.label
    return mosaic, labels


class IDCDataset(TableDataset):
    """IDC patches as ``(image, 0/1)``; ``groups()`` are patient ids.

    Args:
        root: folder holding the patches (any layout).
        table: optional pre-filtered :func:`scan_idc` table.
        transform, on_bad_file: see :class:`TableDataset`.
    """

    def __init__(self, root: str | Path, table: Any | None = None, *,
                 transform: Callable[..., Any] | None = None,
                 on_bad_file: Literal["error", "skip"] = "error") -> None:
        super().__init__(root, scan_idc(root) if table is None else table, task="classification",
                         transform=transform, class_names=IDC_CLASSES, on_bad_file=on_bad_file)
