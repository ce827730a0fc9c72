"""Segmentation pairs: an images folder and a masks folder matched by file stem.

Masks may be semantic (0/1 or class indices) or ``uint16`` instance labels (0 = background,
1..N = nuclei). Common folder names are found automatically (``images``/``imgs`` with
``masks``/``instance_masks``/``labels``); stems may carry a ``_mask`` suffix on the mask side.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from medattn.data.formats.table import TableDataset
from medattn.data.images import IMAGE_EXTENSIONS, files_under, is_junk, read_mask
from medattn.errors import DataError

__all__ = ["scan_seg_pairs", "SegPairsDataset", "find_pair_dirs", "instance_count"]

_IMAGE_DIRS = ("images", "imgs", "image", "Tissue_Images", "tissue_images")
_MASK_DIRS = ("instance_masks", "masks", "mask", "labels", "label", "Binary_masks")
_SUFFIXES = ("_mask", "-mask", "_label", "_labels", "_instance", "_inst")


def find_pair_dirs(root: str | Path) -> tuple[Path, Path]:
    """``(images folder, masks folder)`` under ``root`` by their usual names."""
    r = Path(root)
    img = next((r / d for d in _IMAGE_DIRS if (r / d).is_dir()), None)
    msk = next((r / d for d in _MASK_DIRS if (r / d).is_dir()), None)
    if img is None or msk is None:
        raise DataError(
            f"'{r}' needs an images folder ({'/'.join(_IMAGE_DIRS)}) and a masks folder "
            f"({'/'.join(_MASK_DIRS)}); or pass images= and masks= explicitly"
        )
    return img, msk


def _stem(p: Path) -> str:
    s = p.stem
    for suf in _SUFFIXES:
        if s.lower().endswith(suf):
            return s[: -len(suf)]
    return s


def _files(folder: Path) -> list[Path]:
    return [p for p in files_under(folder)
            if not is_junk(p) and p.suffix.lower() in IMAGE_EXTENSIONS]


def scan_seg_pairs(root: str | Path, images: str | Path | None = None, masks: str | Path | None = None) -> Any:
    """Table ``file, mask, group, split, label`` of matched pairs (paths relative to ``root``).

    Images without a mask and masks without an image are counted in ``table.attrs``
    (``unmatched_images``, ``unmatched_masks``); duplicated stems are an error.
    """
    import pandas as pd

    r = Path(root)
    if images is None or masks is None:
        img_dir, msk_dir = find_pair_dirs(r)
    else:
        img_dir, msk_dir = Path(images), Path(masks)
        img_dir, msk_dir = (img_dir if img_dir.is_absolute() else r / img_dir), (msk_dir if msk_dir.is_absolute() else r / msk_dir)
    by_stem: dict[str, Path] = {}
    for m in _files(msk_dir):
        key = _stem(m)
        if key in by_stem:
            raise DataError(f"two masks for image stem '{key}' in '{msk_dir}': {by_stem[key].name}, {m.name}; keep one")
        by_stem[key] = m
    rows, unmatched = [], 0
    for p in _files(img_dir):
        m = by_stem.pop(p.stem, None) or by_stem.pop(_stem(p), None)
        if m is None:
            unmatched += 1
            continue
        rows.append({"file": p.relative_to(r).as_posix() if p.is_relative_to(r) else str(p),
                     "mask": m.relative_to(r).as_posix() if m.is_relative_to(r) else str(m),
                     "group": p.stem, "split": None, "label": ""})
    if not rows:
        raise DataError(f"no image/mask pairs matched by file stem between '{img_dir}' and '{msk_dir}'")
    df = pd.DataFrame(rows)
    df.attrs.update(unmatched_images=unmatched, unmatched_masks=len(by_stem), format="seg_pairs")
    return df


def instance_count(mask: np.ndarray) -> int:
    """Number of distinct non-zero labels in an instance mask."""
    u = np.unique(mask)
    return int((u != 0).sum())


class SegPairsDataset(TableDataset):
    """Image/mask pairs as ``(image, mask)``; the transform gets both (use
    :class:`~medattn.data.transforms.PairedTransform`).

    Args:
        root: folder holding both sub-folders (or the common parent of ``images``/``masks``).
        table: optional pre-filtered :func:`scan_seg_pairs` table.
        binary: map every non-zero label to 1 (semantic foreground).
        transform, on_bad_file: see :class:`TableDataset`.
    """

    def __init__(self, root: str | Path, table: Any | None = None, *,
                 transform: Callable[..., Any] | None = None, binary: bool = False,
                 on_bad_file: str = "error") -> None:
        self.binary = binary
        super().__init__(root, scan_seg_pairs(root) if table is None else table, task="segmentation",
                         transform=transform, mask_loader=self._mask, on_bad_file=on_bad_file)  # type: ignore[arg-type]

    def _mask(self, row: Any) -> np.ndarray:
        m = read_mask(self.root / str(row["mask"]))
        return (m > 0).astype(np.uint8) if self.binary else m

    def instance_counts(self) -> list[int]:
        """Instances per mask (reads every mask)."""
        return [instance_count(read_mask(self.root / str(m))) for m in self.table["mask"]]
