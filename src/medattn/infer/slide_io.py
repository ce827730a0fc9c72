"""Whole-slide reading: OpenSlide (``openslide-bin`` wheel), tiffslide for plain pyramidal TIFF.

:class:`SlideReader` is picklable (it holds the path and the backend name and opens the file
lazily in each process), so DataLoader workers read regions in parallel, each with its own handle.

A damaged slide: a level that cannot be decoded is a :class:`DataError` naming the file; a reader
given a ``tile_errors`` log survives a corrupt tile in the middle of a slide (the region is logged
there, one JSON line per tile, and read as white glass) so the slide finishes with that tile marked.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from medattn.errors import ConfigError, DataError, MedattnError

__all__ = ["SlideReader", "open_slide", "choose_level", "read_tile_errors", "error_line", "TILE_ERRORS",
           "model_mpp", "tissue_overview"]

TILE_ERRORS = "tile_errors.jsonl"
"""Name of the corrupt-tile log in a slide's output folder."""


def error_line(exc: BaseException) -> str:
    """An exception as one line for a user: its message (first line), or its type when empty."""
    msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    if isinstance(exc, MedattnError):
        return msg or type(exc).__name__
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def _log_tile_error(path: str, x: int, y: int, level: int, exc: BaseException) -> None:
    """Append one JSON line (a single ``write`` on an ``O_APPEND`` file: whole lines from
    concurrent DataLoader workers)."""
    line = json.dumps({"x": int(x), "y": int(y), "level": int(level), "error": error_line(exc)}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def read_tile_errors(path: str | Path) -> list[dict[str, Any]]:
    """The tiles logged by a reader's ``tile_errors`` file (``[]`` when there is none)."""
    p = Path(path)
    if not p.is_file():
        return []
    out = []
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill
            continue
    return out


def _open(path: str, backend: str) -> Any:
    if backend == "openslide":
        import openslide

        return openslide.OpenSlide(path)
    import logging

    import tiffslide

    logging.getLogger("tifffile").setLevel(logging.CRITICAL)  # its logs on damaged files print object reprs
    return tiffslide.TiffSlide(path)


class SlideReader:
    """A whole-slide image: levels, scale and RGB regions in level-0 coordinates."""

    def __init__(self, path: str | Path, backend: str, tile_errors: str | Path | None = None) -> None:
        self.path, self.backend = str(path), backend
        self.tile_errors = str(tile_errors) if tile_errors else None
        self._h: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "backend": self.backend, "tile_errors": self.tile_errors, "_h": None}

    @property
    def handle(self) -> Any:
        if self._h is None:
            self._h = _open(self.path, self.backend)
        return self._h

    def close(self) -> None:
        if self._h is not None:
            self._h.close()
            self._h = None

    @property
    def dimensions(self) -> tuple[int, int]:
        """``(width, height)`` of level 0."""
        w, h = self.handle.dimensions
        return int(w), int(h)

    @property
    def level_dimensions(self) -> list[tuple[int, int]]:
        return [(int(w), int(h)) for w, h in self.handle.level_dimensions]

    @property
    def level_downsamples(self) -> list[float]:
        return [float(d) for d in self.handle.level_downsamples]

    @property
    def vendor(self) -> str:
        props = self.handle.properties
        return str(props.get("openslide.vendor") or props.get("tiffslide.vendor") or "unknown")

    @property
    def mpp(self) -> float | None:
        """Microns per level-0 pixel from the slide's metadata (mean of x and y), or ``None``."""
        props = self.handle.properties
        vals = []
        for key in ("openslide.mpp-x", "openslide.mpp-y", "tiffslide.mpp-x", "tiffslide.mpp-y"):
            try:
                v = float(props.get(key) or 0)
            except (TypeError, ValueError):
                v = 0.0
            if v > 0:
                vals.append(v)
        return float(np.mean(vals)) if vals else None

    def read_region(self, x: int, y: int, level: int, w: int, h: int) -> np.ndarray:
        """RGB ``uint8`` ``h×w×3`` at ``level`` whose top-left is level-0 ``(x, y)``; transparent
        pixels (outside the scanned area) become white.

        With a ``tile_errors`` log, a region the backend cannot decode is logged there and
        returned white (the handle is reopened: OpenSlide's stays failed after one error);
        without one the backend's error propagates.
        """
        if self.tile_errors is None:
            return self._read(x, y, level, w, h)
        try:
            return self._read(x, y, level, w, h)
        except Exception as exc:  # each backend and codec raises its own decoding errors
            try:
                self.close()
            except Exception:  # a handle in an error state may fail to close too
                self._h = None
            _log_tile_error(self.tile_errors, x, y, level, exc)
            return np.full((int(h), int(w), 3), 255, np.uint8)

    def _read(self, x: int, y: int, level: int, w: int, h: int) -> np.ndarray:
        img = self.handle.read_region((int(x), int(y)), int(level), (int(w), int(h)))
        a = np.asarray(img)
        if a.ndim == 3 and a.shape[2] == 4:
            alpha = a[..., 3:4].astype(np.float32) / 255.0
            a = (a[..., :3].astype(np.float32) * alpha + 255.0 * (1 - alpha) + 0.5).astype(np.uint8)
        return np.ascontiguousarray(a[..., :3])

    def read_level(self, level: int) -> np.ndarray:
        """A whole (low-resolution) level as RGB.

        Raises:
            DataError: the level cannot be decoded (a damaged or truncated file).
        """
        w, h = self.level_dimensions[level]
        try:
            return self._read(0, 0, level, w, h)
        except Exception as exc:  # each backend and codec raises its own decoding errors
            raise DataError(f"slide '{self.path}' is damaged or truncated: its level {level} ({w}×{h} px) "
                            f"cannot be decoded ({error_line(exc)})") from None


def open_slide(path: str | Path, *, tile_errors: str | Path | None = None) -> SlideReader:
    """Open a whole-slide image with OpenSlide, or tiffslide for TIFFs OpenSlide does not take.

    ``tile_errors``: a log file that makes :meth:`SlideReader.read_region` survive corrupt tiles.

    Raises:
        DataError: missing file or a format neither library reads (the message names the format).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"slide '{p}' not found")
    if p.stat().st_size == 0:
        raise DataError(f"slide '{p}' is an empty file (0 bytes); copy it again")
    errors = []
    for backend in ("openslide", "tiffslide"):
        try:
            r = SlideReader(p, backend, tile_errors)
            r.dimensions  # noqa: B018  (opens the file)
            return r
        except ImportError as exc:
            errors.append(f"{backend} is not installed ({exc.name}); pip install 'medattn[slide]'")
        except Exception as exc:  # each library raises its own unsupported-format errors
            errors.append(f"{backend}: {error_line(exc)}")
    with open(p, "rb") as fh:
        head = fh.read(8)
    kind = "TIFF" if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+") else f"bytes {head[:4]!r}"
    raise DataError(f"slide '{p}' ({kind}, suffix '{p.suffix}') is not a format OpenSlide or tiffslide reads "
                    f"(SVS, NDPI, MRXS, SCN, pyramidal TIFF, DICOM WSI): {'; '.join(errors)}")


def choose_level(downsamples: list[float], target: float) -> int:
    """The coarsest level whose downsample does not exceed ``target`` (level-0 px per model px):
    regions are read there and resized down, never up-sampled from a coarser level."""
    best = 0
    for i, d in enumerate(downsamples):
        if d <= target * (1 + 1e-3) and d >= downsamples[best]:
            best = i
    return best


def model_mpp(meta: dict[str, Any], override: float | None, source: str = "the bundle") -> float:
    """µm per model-input pixel: ``override``, the bundle's ``mpp``, or its recipe's ``data.mpp``."""
    from medattn.bundle_meta import recorded_mpp

    v = override or recorded_mpp(meta)
    if not v:
        raise ConfigError(f"{source} records no training scale (recipe data.mpp); pass --model-mpp with the "
                          "µm per pixel of the model input (PCam 96 px: 0.972), never a guess")
    return float(v)


def tissue_overview(reader: SlideReader, method: str, target_ds: float = 16.0,
                    max_px: int = 2048) -> tuple[np.ndarray, np.ndarray, float]:
    """``(thumbnail RGB, tissue mask, level-0 px per mask px)`` from the coarsest level whose
    downsample is at most ``target_ds`` (a few mask pixels per tile edge are enough), resized
    when its longer side exceeds ``max_px``."""
    from PIL import Image

    from medattn.infer.tissue import tissue_mask

    dss = reader.level_downsamples
    level = choose_level(dss, max(target_ds, 1.0))
    img = reader.read_level(level)
    scale = dss[level]
    if max(img.shape[:2]) > max_px:
        k = max_px / max(img.shape[:2])
        im = Image.fromarray(img).resize((max(1, int(img.shape[1] * k)), max(1, int(img.shape[0] * k))),
                                         Image.Resampling.BILINEAR)
        scale *= img.shape[1] / im.size[0]
        img = np.asarray(im)
    return img, tissue_mask(img, method), float(scale)
