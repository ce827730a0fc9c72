"""Whole-slide reading: OpenSlide (``openslide-bin`` wheel), tiffslide for plain pyramidal TIFF.

:class:`SlideReader` is picklable (it holds the path and the backend name and opens the file
lazily in each process), so DataLoader workers read regions in parallel, each with its own handle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medattn.errors import ConfigError, DataError

__all__ = ["SlideReader", "open_slide", "choose_level", "model_mpp", "tissue_overview"]


def _open(path: str, backend: str) -> Any:
    if backend == "openslide":
        import openslide

        return openslide.OpenSlide(path)
    import tiffslide

    return tiffslide.TiffSlide(path)


class SlideReader:
    """A whole-slide image: levels, scale and RGB regions in level-0 coordinates."""

    def __init__(self, path: str | Path, backend: str) -> None:
        self.path, self.backend = str(path), backend
        self._h: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "backend": self.backend, "_h": None}

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
        pixels (outside the scanned area) become white."""
        img = self.handle.read_region((int(x), int(y)), int(level), (int(w), int(h)))
        a = np.asarray(img)
        if a.ndim == 3 and a.shape[2] == 4:
            alpha = a[..., 3:4].astype(np.float32) / 255.0
            a = (a[..., :3].astype(np.float32) * alpha + 255.0 * (1 - alpha) + 0.5).astype(np.uint8)
        return np.ascontiguousarray(a[..., :3])

    def read_level(self, level: int) -> np.ndarray:
        """A whole (low-resolution) level as RGB."""
        w, h = self.level_dimensions[level]
        return self.read_region(0, 0, level, w, h)


def open_slide(path: str | Path) -> SlideReader:
    """Open a whole-slide image with OpenSlide, or tiffslide for TIFFs OpenSlide does not take.

    Raises:
        DataError: missing file or a format neither library reads (the message names the format).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"slide '{p}' not found")
    errors = []
    for backend in ("openslide", "tiffslide"):
        try:
            r = SlideReader(p, backend)
            r.dimensions  # noqa: B018  (opens the file)
            return r
        except ImportError as exc:
            errors.append(f"{backend} is not installed ({exc.name}); pip install 'medattn[slide]'")
        except Exception as exc:  # each library raises its own unsupported-format errors
            errors.append(f"{backend}: {str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__}")
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
    v = override or meta.get("mpp") or ((meta.get("recipe") or {}).get("data") or {}).get("mpp")
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
