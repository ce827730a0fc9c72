"""The one image decoder: every door (training datasets, predict, slide regions, REST, dashboard,
explain, evaluate) turns bytes, files, PIL images or arrays into pixels through this module.

Rules, in order:

1. **Format from content**, never from the file name: PNG, JPEG, BMP, TIFF, GIF, WebP, DICOM.
2. **Pixel count from the header**, checked against ``max_pixels`` *before* decoding, so a
   decompression bomb is refused unread.
3. **Orientation**: the EXIF orientation tag is applied (a phone photo is seen upright).
4. **Modes**: palette, CMYK, YCbCr, LAB and HSV become RGB; 1-bit becomes 0/255 grey;
   RGBA/LA (and palette transparency) are composited **over white** (a transparent border is
   glass, not black tissue).
5. **Bit depth**: 8-bit passes unchanged; 16-bit, 32-bit and float images are stretched per image
   from their minimum to their maximum to 0–255 (a 12-bit image with a small range stays
   visible); DICOM is mapped by its own modality LUT and VOI window instead, MONOCHROME1 inverted.
6. **Channels**: ``mode="RGB"`` replicates grey to three channels; ``mode="L"`` takes the
   luminance (ITU-R 601: 0.299 R + 0.587 G + 0.114 B); ``mode=None`` keeps grey as ``H×W``.

The result is always a ``uint8`` numpy array (``H×W×3`` or ``H×W``). :func:`decode_raw` gives the
stored values without rules 4–6, for label masks.

**Resolution** (``info=`` dict on :func:`read_image` / :func:`decode_raw`, read from the header the
decoder opens anyway): ``info["mpp"]`` is the µm per pixel the file declares, or ``None``, and
``info["mpp_source"]`` where it came from: DICOM ``PixelSpacing`` (or ``ImagerPixelSpacing``), an
Aperio ``MPP =`` field, ImageJ resolution in microns, TIFF resolution tags, PNG ``pHYs``
or JPEG density. A TIFF/PNG/JPEG resolution coarser than :data:`MAX_HEADER_MPP` (under 1,000 dpi)
is a screen or print default (72, 96, 300 dpi), not a scan, and is ignored.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medattn.errors import DataError, MedattnError

__all__ = ["IMAGE_FORMATS", "DEFAULT_MAX_PIXELS", "ImageTooLargeError", "UnsupportedImageError",
           "sniff_format", "read_image", "decode_raw", "read_dicom", "to_uint8", "as_image_array", "MAX_HEADER_MPP"]

IMAGE_FORMATS = ("png", "jpeg", "bmp", "tiff", "gif", "webp", "dicom")
DEFAULT_MAX_PIXELS = 50_000_000
MAX_HEADER_MPP = 25.4
"""µm/px above which a TIFF/PNG/JPEG resolution tag is taken for a screen or print default."""
Mode = Literal["RGB", "L"] | None


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
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[128:132] == b"DICM":
        return "dicom"
    return None


def _as_bytes(source: bytes | str | Path, max_bytes: int | None, label: str | None = None) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), label or "upload"
    else:
        p = Path(source)
        name = label or f"'{p}'"
        if not p.is_file():
            raise DataError(f"image {name} not found; check the path or regenerate the file list")
        if max_bytes is not None and p.stat().st_size > max_bytes:
            raise ImageTooLargeError(f"{name} is {p.stat().st_size} bytes; the limit is {max_bytes}")
        data = p.read_bytes()
    if max_bytes is not None and len(data) > max_bytes:
        raise ImageTooLargeError(f"{name} is {len(data)} bytes; the limit is {max_bytes}")
    if not data:
        raise DataError(f"image {name} is empty (0 bytes); re-copy it or drop it")
    return data, name


def _check_pixels(w: int, h: int, frames: int, max_pixels: int | None, name: str) -> None:
    if max_pixels is not None and w * h * max(frames, 1) > max_pixels:
        raise ImageTooLargeError(
            f"{name} declares {w}×{h}{f'×{frames} frames' if frames > 1 else ''} pixels, more than the "
            f"limit of {max_pixels:,}; downscale it before sending"
        )


def _first_line(exc: BaseException) -> str:
    """An exception's message without Python object reprs (``<_io.BytesIO object at 0x…>``)."""
    import re

    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return re.sub(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>", "", text)[:160]


def _set_mpp(info: dict[str, Any] | None, mpp: float | None, source: str) -> None:
    """Record a declared resolution in ``info`` (DICOM always; other formats only when plausible for
    a scan, see :data:`MAX_HEADER_MPP`)."""
    if info is None or info.get("mpp"):
        return
    if mpp is not None and np.isfinite(mpp) and mpp > 0 and (source.startswith("DICOM") or mpp <= MAX_HEADER_MPP):
        info.update(mpp=float(mpp), mpp_source=source)


def _description_mpp(text: str) -> float | None:
    """µm/px from an Aperio-style description (``|MPP = 0.2525|``)."""
    import re

    m = re.search(r"\bMPP\s*=\s*([0-9.eE+-]+)", text)
    if m:
        try:
            return float(m.group(1))
        except ValueError:
            return None
    return None


def _pil_mpp(im: Any, info: dict[str, Any] | None) -> None:
    """Resolution of a PIL image from its ``dpi`` (PNG pHYs, JPEG density, TIFF tags)."""
    if info is None:
        return
    dpi = im.info.get("dpi")
    if dpi and float(dpi[0]) > 0 and im.info.get("jfif_unit", 1) != 0:
        _set_mpp(info, 25400.0 / float(dpi[0]), f"{im.format} resolution ({float(dpi[0]):.0f} dpi)")


def _pil_pixels(im: Any) -> np.ndarray:
    """Pixels of a loaded PIL image: palette/CMYK/… to RGB(A), 16-bit kept, EXIF orientation applied."""
    from PIL import ImageOps

    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - a malformed EXIF block must not lose the image
        pass
    mode = im.mode
    if mode == "P" or mode == "PA":
        im = im.convert("RGBA" if ("transparency" in im.info or mode == "PA") else "RGB")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    elif mode == "1":
        im = im.convert("L")
    elif mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(im, dtype=np.uint16)
    return np.asarray(im)


def decode_raw(source: bytes | str | Path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               max_bytes: int | None = None, name: str | None = None,
               info: dict[str, Any] | None = None) -> np.ndarray:
    """The stored values of an image (any dtype, ``H×W`` or ``H×W×C``), format from content,
    pixel count checked from the header. Label masks use this; images use :func:`read_image`.
    ``info`` (a dict) receives ``mpp`` and ``mpp_source`` (see the module docstring).

    Raises:
        UnsupportedImageError: not an accepted format. ImageTooLargeError: over a limit.
        DataError: missing, empty, corrupt or truncated content.
    """
    import warnings

    from PIL import Image

    data, label = _as_bytes(source, max_bytes, name)
    fmt = sniff_format(data[:132])
    if fmt is None:
        raise UnsupportedImageError(f"{label} is not an image medattn reads ({', '.join(IMAGE_FORMATS)}); "
                                    "remove it or convert it")
    if info is not None:
        info.setdefault("mpp", None)
        info.setdefault("mpp_source", None)
    if fmt == "dicom":
        return read_dicom(data, max_pixels=max_pixels, name=label, info=info)
    if fmt == "tiff":
        arr = _read_tiff(data, max_pixels, label, info)
        if arr is not None:
            return arr
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=[fmt.upper()])
            _check_pixels(im.size[0], im.size[1], 1, max_pixels, label)
            _pil_mpp(im, info)
            im.load()
            return _pil_pixels(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLargeError(f"{label} declares more pixels than Pillow's decompression-bomb limit; "
                                 "refused unread") from None
    except MedattnError:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for corrupt data
        raise DataError(f"{label} is a corrupt or truncated {fmt.upper()} ({_first_line(exc)}); re-copy it "
                        "or drop it") from None


def _tiff_mpp(page: Any, info: dict[str, Any] | None) -> None:
    """Resolution of a TIFF page: a description's MPP, else XResolution in its ResolutionUnit."""
    if info is None:
        return
    desc = str(page.description or "")
    mpp = _description_mpp(desc)
    if mpp:
        _set_mpp(info, mpp, "TIFF description (MPP)")
        return
    tags = page.tags
    if "XResolution" not in tags:
        return
    num, den = tags["XResolution"].value
    unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
    if not num or not den:
        return
    per_unit = float(num) / float(den)  # pixels per inch (2) or per centimetre (3)
    if "unit=micron" in desc:  # ImageJ: the resolution is pixels per micron whatever the unit tag
        _set_mpp(info, 1.0 / per_unit, "TIFF resolution (ImageJ, micron)")
        return
    if unit not in (2, 3):
        return
    _set_mpp(info, (25400.0 if unit == 2 else 10000.0) / per_unit, "TIFF resolution tags")


def _read_tiff(data: bytes, max_pixels: int | None, label: str, info: dict[str, Any] | None = None) -> np.ndarray | None:
    """TIFF pixels by tifffile (16-bit, float, planar and multi-sample images), or ``None`` to let
    Pillow try an exotic file."""
    try:
        import tifffile
    except ImportError:
        return None
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tf:
            page = tf.pages[0]
            _check_pixels(int(page.imagewidth), int(page.imagelength), 1, max_pixels, label)
            arr = page.asarray()
            _tiff_mpp(page, info)
    except MedattnError:
        raise
    except Exception:  # noqa: BLE001 - let Pillow try (and name the problem)
        return None
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4):
        arr = np.moveaxis(arr, 0, -1)
    return arr


def to_uint8(a: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """``uint8`` image by the one bit-depth rule: ``uint8`` passes; booleans map to 0/255; any other
    integer or float array is stretched from ``lo`` to ``hi`` (default: its own minimum and maximum)
    to 0..255; a constant or non-finite image becomes 0."""
    if a.dtype == np.uint8 and lo is None and hi is None:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    a = a.astype(np.float64)
    lo = float(np.nanmin(a)) if lo is None else lo
    hi = float(np.nanmax(a)) if hi is None else hi
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.clip((a - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)


def _alpha01(alpha: np.ndarray) -> np.ndarray:
    if alpha.dtype == np.uint8:
        return alpha.astype(np.float32) / 255.0
    if alpha.dtype.kind in "ui":
        return alpha.astype(np.float32) / float(np.iinfo(alpha.dtype).max if alpha.max() > 255 else 255)
    return np.clip(alpha.astype(np.float32), 0, 1)


def as_image_array(arr: np.ndarray, mode: Mode = "RGB", name: str = "image") -> np.ndarray:
    """Rules 4–6 of the module docstring on decoded pixels: ``uint8`` ``H×W×3`` (RGB), ``H×W`` (L)
    or either (``None``). Also takes ``3×H×W`` arrays.

    Raises:
        DataError: not a 2-D image with 1–4 channels.
    """
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[2] not in (1, 3, 4):
        a = np.moveaxis(a, 0, 2)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 3 and a.shape[2] in (2, 4):  # LA / RGBA over white
        color, alpha = to_uint8(a[..., :-1]).astype(np.float32), _alpha01(a[..., -1:])
        a = (color * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
        if a.shape[2] == 1:
            a = a[..., 0]
    elif a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
        raise DataError(f"{name} has shape {tuple(np.shape(arr))}; expected a 2-D image with 1, 3 or 4 channels")
    a = to_uint8(a)
    if mode == "RGB" and a.ndim == 2:
        return np.ascontiguousarray(np.repeat(a[..., None], 3, axis=-1))
    if mode == "L" and a.ndim == 3:
        lum = a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114
        return (lum + 0.5).astype(np.uint8)
    return np.ascontiguousarray(a)


def read_image(source: Any, mode: Mode = "RGB", *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               max_bytes: int | None = None, name: str | None = None,
               info: dict[str, Any] | None = None) -> np.ndarray:
    """Decode an image by the rules of this module → ``uint8`` array.

    Args:
        source: a file path, raw bytes, a PIL image, a pydicom dataset or a numpy array.
        mode: ``RGB`` (``H×W×3``), ``L`` (``H×W``) or ``None`` (grey stays ``H×W``).
        max_pixels: largest width × height (× frames) accepted (``None``: no limit).
        max_bytes: largest input size accepted.
        name: how error messages call the input (default: its path, or "upload").
        info: a dict that receives the declared resolution, ``mpp`` (µm/px or ``None``) and
            ``mpp_source`` (see the module docstring); arrays and PIL images without ``dpi`` have none.

    Raises:
        UnsupportedImageError, ImageTooLargeError, DataError: see :func:`decode_raw`.
    """
    if info is not None:
        info.setdefault("mpp", None)
        info.setdefault("mpp_source", None)
    if mode not in ("RGB", "L", None):
        from medattn.errors import ConfigError

        raise ConfigError(f"image mode '{mode}' is not supported; use 'RGB' or 'L'")
    label = name or (f"'{source}'" if isinstance(source, (str, Path)) else "image")
    if isinstance(source, (str, Path, bytes, bytearray, memoryview)):
        raw = decode_raw(source, max_pixels=max_pixels, max_bytes=max_bytes, name=name, info=info)
    elif hasattr(source, "PixelData") and hasattr(source, "save_as"):  # a pydicom Dataset
        buf = io.BytesIO()
        source.save_as(buf, enforce_file_format=True)
        raw = read_dicom(buf.getvalue(), max_pixels=max_pixels, name=label, info=info)
    elif hasattr(source, "mode") and hasattr(source, "size") and hasattr(source, "convert"):  # PIL
        _check_pixels(source.size[0], source.size[1], 1, max_pixels, label)
        _pil_mpp(source, info)
        raw = _pil_pixels(source)
    elif isinstance(source, np.ndarray):
        raw = source
    else:
        raise DataError(f"cannot use a {type(source).__name__} as an image; pass a path, bytes, PIL image or array")
    if isinstance(raw, np.ndarray) and raw.ndim >= 2:
        shp = raw.shape if raw.ndim == 2 or raw.shape[-1] <= 4 else raw.shape[1:]
        _check_pixels(int(shp[1]), int(shp[0]), 1, max_pixels, label)
    return as_image_array(raw, mode, label)


def read_dicom(source: bytes | str | Path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               name: str | None = None, info: dict[str, Any] | None = None) -> np.ndarray:
    """First frame of a DICOM file as ``uint8``, modality LUT and VOI window applied.

    Rescale slope/intercept (or a modality LUT) map stored values to physical units, the first
    VOI window (or VOI LUT) maps those to display values, and ``MONOCHROME1`` is inverted so that
    high values are bright. Colour DICOMs are returned as RGB.
    """
    try:
        import pydicom
        from pydicom.pixels import apply_modality_lut, apply_voi_lut, pixel_array
    except ImportError:
        raise UnsupportedImageError("reading DICOM needs pydicom (a medattn dependency): pip install pydicom") from None

    data, label = _as_bytes(source, None, name)
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except AttributeError as exc:  # a DICOM without image attributes (Rows, Columns)
        missing = getattr(exc, "name", None) or "Rows/Columns"
        raise DataError(f"{label} is a DICOM file without an image (no {missing} element); send an image "
                        "DICOM") from None
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{label} is not a readable DICOM image ({_first_line(exc)})") from None
    _check_pixels(cols, rows, frames, max_pixels, label)
    for tag in ("PixelSpacing", "ImagerPixelSpacing"):
        spacing = ds.get(tag)
        if spacing is not None and len(spacing) >= 2:
            try:
                _set_mpp(info, 1000.0 * float(spacing[1]), f"DICOM {tag}")  # mm per pixel (row, column)
            except (TypeError, ValueError):
                pass
            break
    try:
        arr = pixel_array(ds, index=0 if frames > 1 else None)
    except Exception as exc:  # noqa: BLE001 - missing decoder plugin, truncated pixel data
        raise UnsupportedImageError(
            f"{label}: cannot decode its pixel data ({_first_line(exc)}); send an uncompressed DICOM"
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
