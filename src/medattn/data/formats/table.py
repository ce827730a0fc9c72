"""A torch Dataset over a scanner's table: one row per item, paths relative to a root.

Every file-based format adapter (folders, csv, cxr14, idc, seg_pairs, monuseg) builds on
:class:`TableDataset`, so all of them share the same contract as
:class:`~medattn.data.formats.pcam_h5.PCamH5Dataset`: ``(image CHW tensor, label)`` or
``(image, mask)``, a ``transform`` callable, and ``labels()``, ``item_ids()``, ``groups()``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from medattn.data.images import BadFilePolicy, read_image, read_mask
from medattn.errors import ConfigError, DataError

__all__ = ["TableDataset", "Task", "require_columns"]

Task = Literal["classification", "multilabel", "segmentation"]


def require_columns(table: Any, columns: Sequence[str], what: str) -> None:
    """Raise a :class:`DataError` naming the missing columns of ``table``."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(f"{what} lacks column(s) {missing}; present: {list(table.columns)}")


class TableDataset(Dataset):
    """Items listed in a table (pandas DataFrame) under ``root``.

    Args:
        root: folder the ``file`` (and ``mask``) paths are relative to.
        table: scanner output; needs ``file`` and, by task, ``label`` (class index),
            ``label_columns`` (multi-hot) or ``mask`` (mask path) / ``mask_loader``.
        task: ``classification``, ``multilabel`` or ``segmentation``.
        transform: callable on a ``uint8`` CHW tensor (segmentation: ``(image, mask)``);
            default scales to [0, 1] float.
        mode: ``RGB`` (3 channels) or ``L`` (1 channel).
        label_columns: multi-label column names, in model-output order.
        class_names: class names in index order (recorded in bundles).
        mask_loader: ``row -> H×W integer array`` for masks that are not image files
            (e.g. rasterised XML); overrides the ``mask`` column.
        on_bad_file: ``error`` (raise) or ``skip`` (log once, substitute the next readable item
            so an epoch never dies halfway; the list is in ``self.bad_files``).
    """

    def __init__(
        self,
        root: str | Path,
        table: Any,
        *,
        task: Task = "classification",
        transform: Callable[..., Any] | None = None,
        mode: Literal["RGB", "L"] = "RGB",
        label_columns: Sequence[str] | None = None,
        class_names: Sequence[str] | None = None,
        mask_loader: Callable[[Any], np.ndarray] | None = None,
        on_bad_file: Literal["error", "skip"] = "error",
    ) -> None:
        if task not in ("classification", "multilabel", "segmentation"):
            raise ConfigError(f"task '{task}' is unknown; use classification, multilabel or segmentation")
        self.root = Path(root)
        self.table = table.reset_index(drop=True)
        require_columns(self.table, ["file"], f"item table of '{self.root}'")
        self.task = task
        self.transform = transform
        self.mode = mode
        self.label_columns = list(label_columns or [])
        self.class_names = list(class_names or [])
        self.mask_loader = mask_loader
        self.policy = BadFilePolicy(on_bad_file)
        if task == "classification":
            require_columns(self.table, ["label"], f"item table of '{self.root}'")
        elif task == "multilabel":
            if not self.label_columns:
                raise ConfigError("multilabel datasets need label_columns (the finding names in order)")
            require_columns(self.table, self.label_columns, f"item table of '{self.root}'")
        elif mask_loader is None:
            require_columns(self.table, ["mask"], f"item table of '{self.root}'")

    def __len__(self) -> int:
        return len(self.table)

    @property
    def bad_files(self) -> dict[str, str]:
        """Files skipped so far in this process (``file -> reason``)."""
        return self.policy.bad

    def labels(self) -> np.ndarray:
        """Class indices (N) or multi-hot matrix (N×K); segmentation: per-item instance counts are
        not labels, so this returns zeros."""
        if self.task == "classification":
            return self.table["label"].to_numpy(dtype=np.int64)
        if self.task == "multilabel":
            return self.table[self.label_columns].to_numpy(dtype=np.float32)
        return np.zeros(len(self.table), np.int64)

    def item_ids(self) -> list[str]:
        """Item identifiers: the ``file`` paths relative to the root."""
        return self.table["file"].astype(str).tolist()

    def groups(self) -> list[str]:
        """Patient/slide of each item (the file itself when no group is known)."""
        if "group" in self.table.columns:
            g = self.table["group"].astype(str)
            return g.where(self.table["group"].notna(), self.table["file"].astype(str)).tolist()
        return self.item_ids()

    def _load(self, i: int) -> tuple[torch.Tensor, ...]:
        row = self.table.iloc[i]
        arr = read_image(self.root / str(row["file"]), mode=self.mode, max_pixels=None)
        img = torch.from_numpy(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1).copy())
        if self.task == "segmentation":
            m = self.mask_loader(row) if self.mask_loader is not None else read_mask(self.root / str(row["mask"]))
            if m.shape != arr.shape[:2]:
                raise DataError(
                    f"mask of '{row['file']}' is {m.shape[1]}×{m.shape[0]} but the image is "
                    f"{arr.shape[1]}×{arr.shape[0]}; masks must match their image"
                )
            mask = torch.from_numpy(m.astype(np.int64 if m.dtype != np.uint8 else np.uint8))
            if self.transform is not None:
                return tuple(self.transform(img, mask))
            return img.float() / 255.0, mask
        if self.task == "multilabel":
            label = torch.from_numpy(row[self.label_columns].to_numpy(dtype=np.float32))
        else:
            label = torch.tensor(int(row["label"]), dtype=torch.int64)
        img = self.transform(img) if self.transform is not None else img.float() / 255.0
        return img, label

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        n = len(self)
        for k in range(n):
            j = (i + k) % n
            try:
                return self._load(j)
            except DataError as exc:
                self.policy.handle(str(self.table.iloc[j]["file"]), exc)
        raise DataError(f"every item under '{self.root}' is unreadable; check the data folder")
