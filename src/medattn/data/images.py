"""Robust image reading: every input mode converted explicitly, every bad file named.

Images are returned as ``uint8`` arrays, ``H×W×3`` (``mode="RGB"``) or ``H×W`` (``mode="L"``):

- grayscale (``L``, ``1``, ``I``, ``F``) is replicated to three channels for ``RGB``;
- ``RGBA``/``LA``/palette images are composited over white (a transparent border does not become
  black tissue);
- 16-bit and float images are min-max stretched per image to 0–255 (a 12-bit CXR or a
  fluorescence image with a small range stays visible), see :func:`to_uint8`;
- masks keep their integer values (:func:`read_mask`, ``uint16`` instance labels survive).

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

from medattn.errors import ConfigError, DataError

__all__ = [
    "IMAGE_EXTENSIONS",
    "JUNK_NAMES",
    "is_junk",
    "read_image",
    "read_mask",
    "to_uint8",
    "check_image",
    "write_image",
    "BadFilePolicy",
]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp"})
JUNK_NAMES = frozenset({"thumbs.db", ".ds_store", "desktop.ini"})
_TIFF = {".tif", ".tiff"}


def is_junk(path: Path) -> bool:
    """Hidden files, macOS resource forks (``._*``) and OS litter (``Thumbs.db``)."""
    return path.name.startswith(".") or path.name.lower() in JUNK_NAMES


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Convert any numeric image to ``uint8``.

    ``uint8`` passes unchanged; booleans map to 0/255; other integer and float arrays are
    stretched per image from their minimum to their maximum (a constant image becomes 0).
    """
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    a = arr.astype(np.float64)
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    return np.clip((a - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)


def _check_exists(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"image '{path}' not found; check the path or regenerate the file list")
    if path.stat().st_size == 0:
        raise DataError(f"image '{path}' is empty (0 bytes); re-copy it or drop it (on_bad_file: skip)")


def _read_raw(path: Path) -> tuple[np.ndarray, str]:
    """Decoded pixels and the source mode name (PIL mode or ``tiff:<dtype>``)."""
    _check_exists(path)
    if path.suffix.lower() in _TIFF:
        try:
            import tifffile

            arr = tifffile.imread(path)
            if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4):
                arr = np.moveaxis(arr, 0, -1)
            return np.asarray(arr), f"tiff:{arr.dtype}"
        except Exception:  # noqa: BLE001 - fall back to Pillow for exotic TIFFs
            pass
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode == "P":
                im2 = im.convert("RGBA")
            elif mode in ("I;16", "I;16B", "I;16L"):
                return np.asarray(im, dtype=np.uint16), mode
            elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                im2 = im.convert("RGB")
            else:
                im2 = im
            return np.asarray(im2), mode
    except UnidentifiedImageError:
        raise DataError(f"'{path}' is not a readable image; remove it or set on_bad_file: skip") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(
            f"image '{path}' is corrupt or truncated ({exc}); re-copy it or set on_bad_file: skip"
        ) from None


def _over_white(arr: np.ndarray) -> np.ndarray:
    color, alpha = arr[..., :-1].astype(np.float32), arr[..., -1:].astype(np.float32) / 255.0
    return (color * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)


def read_image(path: str | Path, mode: Literal["RGB", "L"] = "RGB") -> np.ndarray:
    """Read one image as ``uint8`` ``H×W×3`` (RGB) or ``H×W`` (L).

    Args:
        path: image file (PNG, JPEG, BMP, TIFF, GIF, WebP).
        mode: ``RGB`` or ``L`` (luminance, ITU-R 601 weights).

    Raises:
        DataError: missing, empty, truncated or undecodable file, or an unsupported shape.
    """
    if mode not in ("RGB", "L"):
        raise ConfigError(f"image mode '{mode}' is not supported; use 'RGB' or 'L'")
    p = Path(path)
    arr, _ = _read_raw(p)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[-1] in (2, 4):  # LA / RGBA
        arr = _over_white(to_uint8(arr))
    elif arr.ndim == 3 and arr.shape[-1] > 4:
        raise DataError(f"image '{p}' has {arr.shape[-1]} channels; expected 1, 3 or 4")
    elif arr.ndim not in (2, 3):
        raise DataError(f"image '{p}' has shape {arr.shape}; expected a 2-D image")
    arr = to_uint8(arr)
    if mode == "RGB":
        return np.ascontiguousarray(np.repeat(arr[..., None], 3, axis=-1) if arr.ndim == 2 else arr)
    if arr.ndim == 2:
        return arr
    lum = arr[..., 0] * 0.299 + arr[..., 1] * 0.587 + arr[..., 2] * 0.114
    return (lum + 0.5).astype(np.uint8)


def read_mask(path: str | Path) -> np.ndarray:
    """Read a label mask keeping its integer values (``uint8``/``uint16``/``int32``), ``H×W``.

    RGB masks whose three channels are equal are reduced to one channel; a colour mask (different
    channels) is rejected, since its colours are not labels.
    """
    p = Path(path)
    arr, _ = _read_raw(p)
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
        arr, mode = _read_raw(p)
    except DataError as exc:
        out["problem"] = "truncated" if "truncat" in str(exc).lower() else "unreadable"
        return out
    out.update(ok=True, mode=mode, size=[int(arr.shape[1]), int(arr.shape[0])])
    if mode not in ("RGB", "L", "tiff:uint8"):
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
