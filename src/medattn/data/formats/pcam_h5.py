"""PCam HDF5 files (``camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5``).

Handles are opened lazily inside each DataLoader worker (an h5py handle must not cross a fork),
so the dataset pickles cleanly and reads only the patches it is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from medattn.errors import DataError

__all__ = ["PCamH5Dataset", "pcam_files", "scan_pcam", "PCAM_SPLITS"]

PCAM_SPLITS = ("train", "valid", "test")
_PATCH = (96, 96, 3)


def pcam_files(root: str | Path, split: str) -> dict[str, Path]:
    """Paths of the x, y, mask and meta files of ``split`` (mask/meta may not exist)."""
    if split not in PCAM_SPLITS:
        raise DataError(f"unknown PCam split '{split}'; use one of {', '.join(PCAM_SPLITS)}")
    r = Path(root)
    stem = f"camelyonpatch_level_2_split_{split}"
    return {
        "x": r / f"{stem}_x.h5",
        "y": r / f"{stem}_y.h5",
        "mask": r / f"{stem}_mask.h5",
        "meta": r / f"{stem}_meta.csv",
    }


def _open(path: Path, what: str):  # noqa: ANN202
    import h5py

    if not path.is_file():
        raise DataError(
            f"PCam {what} file '{path}' not found; expected the official file names "
            "camelyonpatch_level_2_split_<split>_<x|y>.h5 (create synthetic ones with `medattn synth pcam DIR`)"
        )
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"PCam file '{path}' is not a readable HDF5 file ({exc}); re-download or regenerate it") from None


def _only_dataset(f: Any, path: Path, preferred: str):  # noqa: ANN202
    if preferred in f:
        return f[preferred]
    keys = list(f.keys())
    if len(keys) == 1:
        return f[keys[0]]
    raise DataError(f"'{path}' has datasets {keys}; expected one named '{preferred}'")


def _validate(root: Path, split: str, with_masks: bool) -> tuple[int, bool]:
    files = pcam_files(root, split)
    with _open(files["x"], "images") as fx, _open(files["y"], "labels") as fy:
        x = _only_dataset(fx, files["x"], "x")
        y = _only_dataset(fy, files["y"], "y")
        if x.ndim != 4 or tuple(x.shape[1:]) != _PATCH:
            raise DataError(
                f"'{files['x']}' holds an array of shape {tuple(x.shape)}; PCam images must be N×96×96×3 uint8"
            )
        if x.dtype != np.uint8:
            raise DataError(f"'{files['x']}' has dtype {x.dtype}; PCam images must be uint8")
        n = x.shape[0]
        if y.shape[0] != n or int(np.prod(y.shape[1:])) != 1:
            raise DataError(
                f"'{files['y']}' holds shape {tuple(y.shape)} but the images hold {n} patches; "
                "labels must be N×1×1×1 (or N) with one label per image"
            )
    has_mask = files["mask"].is_file()
    if with_masks and not has_mask:
        raise DataError(f"mask file '{files['mask']}' not found; masks are optional, pass with_masks=False")
    if has_mask and with_masks:
        with _open(files["mask"], "masks") as fm:
            m = _only_dataset(fm, files["mask"], "mask")
            if m.shape[0] != n or tuple(m.shape[1:3]) != _PATCH[:2]:
                raise DataError(f"'{files['mask']}' has shape {tuple(m.shape)}; expected N×96×96 with N={n}")
    return n, has_mask


def scan_pcam(root: str | Path) -> Any:
    """Table (pandas DataFrame) of every patch: file, index, label, group (slide), split."""
    import pandas as pd

    rows = []
    for split in PCAM_SPLITS:
        files = pcam_files(root, split)
        if not files["x"].is_file():
            continue
        _validate(Path(root), split, with_masks=False)
        with _open(files["y"], "labels") as fy:
            y = np.asarray(_only_dataset(fy, files["y"], "y")[:]).reshape(-1)
        groups = None
        if files["meta"].is_file():
            meta = pd.read_csv(files["meta"])
            if "wsi" in meta.columns and len(meta) == len(y):
                groups = meta["wsi"].astype(str).tolist()
        for i, lab in enumerate(y):
            rows.append({
                "file": f"{files['x'].name}#{i}", "index": i, "label": int(lab),
                "group": groups[i] if groups else f"{split}_{i}", "split": split,
            })
    if not rows:
        raise DataError(f"no PCam files found in '{root}'; expected camelyonpatch_level_2_split_<split>_x.h5")
    return pd.DataFrame(rows)


class PCamH5Dataset(Dataset):
    """One PCam split as ``(image CHW float, label)`` (plus the mask when ``with_masks``).

    Args:
        root: folder with the official files.
        split: ``train``, ``valid`` or ``test``.
        transform: callable on a ``uint8`` CHW tensor (and a mask when masks are on) returning the
            model input; default: scale to [0, 1] float.
        with_masks: also return the per-pixel tumour mask (``..._mask.h5``).
        indices: optional subset of patch indices.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        transform: Callable[..., Any] | None = None,
        with_masks: bool = False,
        indices: np.ndarray | list[int] | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.files = pcam_files(self.root, split)
        n, _ = _validate(self.root, split, with_masks)
        self.indices = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
        self.transform = transform
        self.with_masks = with_masks
        self._handles: dict[str, Any] | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def _h(self) -> dict[str, Any]:
        import os

        if self._handles is None or self._pid != os.getpid():
            self._handles = {"x": _open(self.files["x"], "images"), "y": _open(self.files["y"], "labels")}
            if self.with_masks:
                self._handles["mask"] = _open(self.files["mask"], "masks")
            self._pid = os.getpid()
        return self._handles

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = None
        state["_pid"] = None
        return state

    def labels(self) -> np.ndarray:
        """All labels of this dataset (read in one go)."""
        with _open(self.files["y"], "labels") as fy:
            y = np.asarray(_only_dataset(fy, self.files["y"], "y")[:]).reshape(-1)
        return y[self.indices].astype(np.int64)

    def groups(self) -> list[str] | None:
        """Slide of every item from ``..._meta.csv`` (column ``wsi``), so bootstrap CIs resample
        whole slides; ``None`` when the split has no meta file (items are then resampled)."""
        import pandas as pd

        meta = self.files["meta"]
        if not meta.is_file():
            return None
        wsi = pd.read_csv(meta, usecols=lambda c: c == "wsi")
        with _open(self.files["y"], "labels") as fy:
            n = len(_only_dataset(fy, self.files["y"], "y"))
        if "wsi" not in wsi.columns or len(wsi) != n:
            return None
        slides = wsi["wsi"].astype(str).to_numpy()
        return slides[self.indices].tolist()

    def item_ids(self) -> list[str]:
        """Stable identifiers of the items, ``<x file>#<index>``."""
        return [f"{self.files['x'].name}#{i}" for i in self.indices]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        h = self._h()
        j = int(self.indices[i])
        img = torch.from_numpy(np.ascontiguousarray(_only_dataset(h["x"], self.files["x"], "x")[j])).permute(2, 0, 1)
        label = torch.tensor(float(np.asarray(_only_dataset(h["y"], self.files["y"], "y")[j]).reshape(-1)[0]))
        if self.with_masks:
            mask = torch.from_numpy(np.asarray(_only_dataset(h["mask"], self.files["mask"], "mask")[j]).reshape(96, 96).astype(np.uint8))
            if self.transform is not None:
                img, mask = self.transform(img, mask)
            else:
                img = img.float() / 255.0
            return img, label, mask
        img = self.transform(img) if self.transform is not None else img.float() / 255.0
        return img, label
