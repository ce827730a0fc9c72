"""Safe decoding of images handed to a model: content sniffing, pixel limits, DICOM.

Used by bundles and the REST API. The format comes from the bytes, never from the file name;
the pixel count is read from the header and checked *before* decoding, so a decompression bomb
is refused unread; DICOM gets its modality LUT, VOI window and MONOCHROME1 inversion applied.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from medattn.errors import DataError, MedattnError

__all__ = ["IMAGE_FORMATS", "DEFAULT_MAX_PIXELS", "ImageTooLargeError", "UnsupportedImageError",
           "sniff_format", "read_image", "read_dicom", "to_uint8"]

IMAGE_FORMATS = ("png", "jpeg", "bmp", "tiff", "dicom")
DEFAULT_MAX_PIXELS = 50_000_000


class UnsupportedImageError(DataError):
    """The content is not one of :data:`IMAGE_FORMATS` (whatever its file name says)."""


class ImageTooLargeError(DataError):
    """The header declares more pixels than allowed (a decompression bomb is refused unread)."""


def sniff_format(head: bytes) -> str | None:
    """Image format from the first bytes of a file (at least 132 for DICOM), or ``None``."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"BM") and len(head) >= 26:
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[128:132] == b"DICM":
        return "dicom"
    return None


def _as_bytes(source: bytes | str | Path, max_bytes: int | None, label: str | None = None) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), label or "upload"
    else:
        p = Path(source)
        if not p.is_file():
            raise DataError(f"image '{p}' not found")
        if max_bytes is not None and p.stat().st_size > max_bytes:
            raise ImageTooLargeError(f"'{p}' is {p.stat().st_size} bytes; the limit is {max_bytes}")
        data, name = p.read_bytes(), str(p)
    if max_bytes is not None and len(data) > max_bytes:
        raise ImageTooLargeError(f"{name} is {len(data)} bytes; the limit is {max_bytes}")
    if not data:
        raise DataError(f"{name} is empty (0 bytes)")
    return data, name


def _check_pixels(w: int, h: int, frames: int, max_pixels: int, name: str) -> None:
    if w * h * max(frames, 1) > max_pixels:
        raise ImageTooLargeError(
            f"{name} declares {w}×{h}{f'×{frames} frames' if frames > 1 else ''} pixels, more than the "
            f"limit of {max_pixels:,}; downscale it before sending"
        )


def read_image(source: bytes | str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_bytes: int | None = None, name: str | None = None) -> Any:
    """Decode PNG/JPEG/BMP/TIFF/DICOM bytes or a file into a PIL image, safely.

    The format comes from the content; the pixel count is read from the header and checked
    against ``max_pixels`` *before* the pixels are decoded; truncated files are refused.

    Args:
        source: raw bytes or a file path.
        max_pixels: largest width × height (× frames) accepted.
        max_bytes: largest input size accepted.
        name: how error messages call the input (default: its path, or "upload").

    Raises:
        UnsupportedImageError: not an accepted format. ImageTooLargeError: over a limit.
        DataError: corrupt or truncated content.
    """
    import warnings

    from PIL import Image

    data, name = _as_bytes(source, max_bytes, name)
    fmt = sniff_format(data[:132])
    if fmt is None:
        raise UnsupportedImageError(f"{name} is not an image medattn accepts ({', '.join(IMAGE_FORMATS)})")
    if fmt == "dicom":
        return Image.fromarray(read_dicom(data, max_pixels=max_pixels, name=name))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=[fmt.upper()])
            _check_pixels(im.size[0], im.size[1], 1, max_pixels, name)
            im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLargeError(f"{name} declares more pixels than Pillow's decompression-bomb limit "
                                 f"(and than medattn's limit of {max_pixels:,}); refused unread") from None
    except MedattnError:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for corrupt data
        raise DataError(f"{name} is a corrupt or truncated {fmt.upper()} ({str(exc)[:120]})") from None
    return im


def read_dicom(source: bytes | str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               name: str | None = None) -> np.ndarray:
    """First frame of a DICOM file as ``uint8``, modality LUT and VOI window applied.

    Rescale slope/intercept (or a modality LUT) map stored values to physical units, the first
    VOI window (or VOI LUT) maps those to display values, and ``MONOCHROME1`` is inverted so that
    high values are bright. Colour DICOMs are returned as RGB.
    """
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut, pixel_array

    data, label = _as_bytes(source, None, name)
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{label} is not a readable DICOM image ({str(exc)[:120]})") from None
    _check_pixels(cols, rows, frames, max_pixels, label)
    try:
        arr = pixel_array(ds, index=0 if frames > 1 else None)
    except Exception as exc:  # noqa: BLE001 - missing decoder plugin, truncated pixel data
        raise UnsupportedImageError(
            f"{label}: cannot decode its pixel data ({str(exc)[:160]}); send an uncompressed DICOM"
        ) from None
    photo = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if arr.ndim == 3 or not photo.startswith("MONOCHROME"):
        return to_uint8(arr)
    x = apply_modality_lut(arr, ds).astype(np.float64)
    lo, hi = float(x.min()), float(x.max())
    if "VOILUTSequence" in ds or "WindowCenter" in ds:
        x = apply_voi_lut(x, ds, index=0).astype(np.float64)
        lo, hi = _voi_range(ds, x)
    out = to_uint8(x, lo, hi)
    return 255 - out if photo == "MONOCHROME1" else out


def _voi_range(ds: Any, x: np.ndarray) -> tuple[float, float]:
    """Output range of pydicom's windowing (as in DICOM PS3.3 C.11.2.1.2), else the data range."""
    if "VOILUTSequence" in ds or "WindowWidth" not in ds:
        return float(x.min()), float(x.max())
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation", 0)) == 0:
        lo, hi = 0.0, float(2**bits - 1)
    else:
        lo, hi = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    if ds.get("RescaleSlope") is not None and ds.get("RescaleIntercept") is not None:
        s, b = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        lo, hi = sorted((lo * s + b, hi * s + b))
    return lo, hi


def to_uint8(a: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """``uint8`` image: ``lo..hi`` (default: the array's own range) stretched to 0..255; uint8 passes."""
    if a.dtype == np.uint8 and lo is None:
        return a
    a = a.astype(np.float64)
    lo = float(a.min()) if lo is None else lo
    hi = float(a.max()) if hi is None else hi
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.clip((a - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)
