"""Images on disk for training data: file lists, label masks, checks, writing, bad-file policy.

Image *pixels* are decoded by the one decoder, :func:`medattn.decode.read_image` (re-exported
here): format from content, EXIF orientation, RGBA over white, 16-bit and float stretched per
image, ``uint8`` ``H×W×3`` (``mode="RGB"``) or ``H×W`` (``mode="L"``). Masks keep their integer
values (:func:`read_mask`, ``uint16`` instance labels survive).

Zero-byte, truncated, undecodable or missing files raise :class:`~medattn.errors.DataError`
naming the file. :class:`BadFilePolicy` implements ``on_bad_file: error|skip``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from medattn.decode import decode_raw, read_image
from medattn.errors import ConfigError, DataError

__all__ = [
    "files_under",
    "IMAGE_EXTENSIONS",
    "JUNK_NAMES",
    "is_junk",
    "read_image",
    "read_mask",
    "check_image",
    "write_image",
    "BadFilePolicy",
]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".dcm"})
JUNK_NAMES = frozenset({"thumbs.db", ".ds_store", "desktop.ini"})


def is_junk(path: Path) -> bool:
    """Hidden files, macOS resource forks (``._*``) and OS litter (``Thumbs.db``)."""
    return path.name.startswith(".") or path.name.lower() in JUNK_NAMES


def files_under(root: str | Path, pattern: str = "*") -> list[Path]:
    """Files under ``root`` whose name matches ``pattern``, sorted, following symbolic links to
    folders (a data set assembled from links to patient folders is common; ``Path.rglob`` skips
    them) and visiting each real folder once (a link loop ends)."""
    import fnmatch
    import os

    out: list[Path] = []
    seen: set[str] = set()
    for here, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(here)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        out += [Path(here) / f for f in files if fnmatch.fnmatch(f, pattern)]
    return sorted(out)


def _raw(path: Path) -> np.ndarray:
    """Stored values of a local training file (no pixel limit: the files are the user's own)."""
    return decode_raw(path, max_pixels=None)


def read_mask(path: str | Path) -> np.ndarray:
    """Read a label mask keeping its integer values (``uint8``/``uint16``/``int32``), ``H×W``.

    RGB masks whose three channels are equal are reduced to one channel; a colour mask (different
    channels) is rejected, since its colours are not labels.
    """
    p = Path(path)
    arr = _raw(p)
    if arr.ndim == 3:
        if arr.shape[-1] == 4:
            arr = arr[..., :3]
        if not (arr == arr[..., :1]).all():
            raise DataError(
                f"mask '{p}' is a colour image; save label masks as single-channel PNG/TIFF "
                "(0 = background, 1..N = labels)"
            )
        arr = arr[..., 0]
    if arr.dtype.kind == "f":
        if not np.all(np.mod(arr, 1) == 0):
            raise DataError(f"mask '{p}' holds non-integer values; masks must hold integer labels")
        arr = arr.astype(np.int32)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.dtype.kind not in "ui":
        raise DataError(f"mask '{p}' has dtype {arr.dtype}; expected integer labels")
    if arr.dtype.kind == "i":
        if arr.min() < 0:
            raise DataError(f"mask '{p}' holds negative labels; use 0 for background, 1..N for labels")
        arr = arr.astype(np.uint16 if arr.max() < 65536 else np.int32)
    return np.ascontiguousarray(arr)


def check_image(path: str | Path) -> dict[str, object]:
    """Diagnose one file without raising: ``{"ok", "problem", "mode", "size", "bytes"}``.

    ``problem`` is ``None``, ``missing``, ``zero-byte``, ``truncated``, ``unreadable`` or
    ``wrong-mode`` (a mode that :func:`read_image` converts: RGBA, palette, 16-bit, ...;
    still readable, hence ``ok`` stays true).
    """
    p = Path(path)
    out: dict[str, object] = {"ok": False, "problem": None, "mode": None, "size": None, "bytes": None}
    if not p.is_file():
        out["problem"] = "missing"
        return out
    out["bytes"] = p.stat().st_size
    if out["bytes"] == 0:
        out["problem"] = "zero-byte"
        return out
    try:
        arr = _raw(p)
    except DataError as exc:
        out["problem"] = "truncated" if "truncat" in str(exc).lower() else "unreadable"
        return out
    chans = 1 if arr.ndim == 2 else int(arr.shape[2])
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}.get(chans, f"{chans}-channel")
    mode = mode if arr.dtype == np.uint8 else f"{mode}:{arr.dtype}"
    out.update(ok=True, mode=mode, size=[int(arr.shape[1]), int(arr.shape[0])])
    if mode not in ("RGB", "L"):
        out["problem"] = "wrong-mode"
    return out


def write_image(path: str | Path, arr: np.ndarray, quality: int = 90) -> Path:
    """Write an image atomically; the format follows the suffix (PNG keeps ``uint16`` masks).

    Args:
        path: target file (``.png``, ``.jpg``, ``.bmp``, ``.tif``).
        arr: ``H×W`` (``uint8``/``uint16``) or ``H×W×3`` ``uint8``.
        quality: JPEG quality.
    """
    from PIL import Image

    from medattn.io import atomic_path

    p = Path(path)
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}.get(
        p.suffix.lower())
    if fmt is None:
        raise ConfigError(f"cannot write image '{p}': unknown suffix; use .png, .jpg, .bmp or .tif")
    a = np.ascontiguousarray(arr)
    if a.dtype == np.uint16 and a.ndim == 2:
        im = Image.fromarray(a.astype("<u2"), mode="I;16") if a.dtype.byteorder == ">" else Image.fromarray(a)
    else:
        im = Image.fromarray(a)
    with atomic_path(p) as tmp:
        im.save(tmp, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return p


@dataclass
class BadFilePolicy:
    """``on_bad_file`` policy: ``error`` raises, ``skip`` logs each bad file once and lists it.

    The list is kept per process; :meth:`write` saves it (one path and reason per line).
    """

    mode: Literal["error", "skip"] = "error"
    bad: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in ("error", "skip"):
            raise ConfigError(f"on_bad_file must be 'error' or 'skip', got '{self.mode}'")
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, object]:
        return {"mode": self.mode, "bad": dict(self.bad)}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.mode = state["mode"]  # type: ignore[assignment]
        self.bad = dict(state["bad"])  # type: ignore[arg-type]
        self._lock = threading.Lock()

    def handle(self, file: str, exc: Exception) -> None:
        """Re-raise under ``error``; record and log once under ``skip``."""
        if self.mode == "error":
            raise exc
        with self._lock:
            if file not in self.bad:
                self.bad[file] = str(exc)
                log.warning("skipping bad file %s: %s", file, exc)

    def write(self, path: str | Path) -> Path:
        """Write the bad-file list as CSV (``file,reason``), atomically."""
        import csv
        import io

        from medattn.io import atomic_write_text

        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["file", "reason"])
        for f, why in sorted(self.bad.items()):
            w.writerow([f, why])
        return atomic_write_text(path, buf.getvalue())
