"""Small pyramidal TIFF slides with known tumour tiles, for tests and benchmarks.

:func:`write_pyramid` writes what OpenSlide reads as an Aperio slide: level 0 and each reduced
level as its own tiled, JPEG-compressed IFD (reduced levels marked ``subfiletype=1``), with an
Aperio-style ImageDescription carrying ``MPP = …``. Two sources of tissue:

* :func:`assemble_idc_slide`: the real 50×50 IDC patches of one patient put back at the x, y in
  their names (``<pid>_idx5_x<X>_y<Y>_class<C>.png``) on a white background;
* :func:`synthetic_slide`: a grid of SynthPCam patches (tumour or not) with glass around.

Both return the truth as a table of level-0 tile boxes and labels.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from medattn.errors import DataError
from medattn.io import atomic_path

__all__ = ["write_pyramid", "assemble_idc_slide", "synthetic_slide", "IDC_NAME"]

IDC_NAME = re.compile(r"(?P<pid>\d+)_idx5_x(?P<x>\d+)_y(?P<y>\d+)_class(?P<label>[01])\.png$")


def _downsample2(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
    b = a[:h, :w].astype(np.float32)
    return ((b[0::2, 0::2] + b[1::2, 0::2] + b[0::2, 1::2] + b[1::2, 1::2]) / 4 + 0.5).astype(np.uint8)


def write_pyramid(path: str | Path, rgb: np.ndarray, mpp: float, *, levels: int = 3, tile: int = 256,
                  quality: int = 90, magnification: float | None = None) -> Path:
    """Write ``rgb`` (``H×W×3`` uint8, level 0) as a tiled JPEG pyramid OpenSlide reads as Aperio.

    Args:
        path: output ``.tif`` / ``.svs`` (written atomically).
        rgb: level-0 image.
        mpp: microns per level-0 pixel, written as the Aperio ``MPP`` field.
        levels: number of levels, each half the size of the previous one.
        tile: tile edge (a multiple of 16).
        quality: JPEG quality.
        magnification: ``AppMag`` (default: 10 / mpp, as for a 0.25 µm/px 40× scan).
    """
    import tifffile

    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise DataError(f"a slide is H×W×3 uint8, got {rgb.shape} {rgb.dtype}")
    h, w = rgb.shape[:2]
    mag = magnification or round(10.0 / mpp, 2)
    desc = (f"Aperio Image Library v12.0.16 \r\n{w}x{h} [0,0 {w}x{h}] ({tile}x{tile}) JPEG/RGB Q={quality}"
            f"|AppMag = {mag:g}|MPP = {mpp:.6g}|Filename = {Path(path).stem}")
    p = Path(path)
    with atomic_path(p) as tmp:
        with tifffile.TiffWriter(tmp, bigtiff=False) as tw:
            level = rgb
            for i in range(levels):
                if i and min(level.shape[:2]) < 2:
                    break
                kw: dict[str, Any] = {"description": desc} if i == 0 else {"subfiletype": 1}
                tw.write(level, photometric="rgb", tile=(tile, tile), compression="jpeg",
                         compressionargs={"level": quality}, metadata=None, **kw)
                level = _downsample2(level)
    return p


def assemble_idc_slide(root: str | Path, patient: str, path: str | Path, *, mpp: float = 4.0,
                       levels: int = 3, background: int = 242) -> tuple[Path, list[dict[str, Any]]]:
    """A sparse slide of one IDC patient's patches at the x, y of their file names.

    Args:
        root: the IDC folder (patches found recursively by name).
        patient: patient id (the ``<pid>`` of the names).
        path: output slide.
        mpp: microns per level-0 pixel (the patches' own scale, ≈ 4 µm/px at 2.5×).
        levels: pyramid levels.
        background: grey level of the glass around the patches.

    Returns:
        ``(slide path, rows)`` with one row per patch: ``x``, ``y`` (level-0 top-left), ``w``,
        ``h``, ``label`` and ``file``.
    """
    from PIL import Image

    files = [(f, IDC_NAME.search(f.name)) for f in Path(root).rglob(f"{patient}_idx5_*.png")]
    found = [(f, m) for f, m in files if m and m.group("pid") == str(patient)]
    if not found:
        raise DataError(f"no IDC patches of patient {patient} under '{root}'")
    # names carry x, y = 50·k + 1: shift by one so patches sit on a 50-pixel grid from 0
    items = sorted((int(m.group("y")) - 1, int(m.group("x")) - 1, int(m.group("label")), f) for f, m in found)
    H = max(y for y, *_ in items) + 50
    W = max(x for _, x, *_ in items) + 50
    canvas = np.full((H, W, 3), background, np.uint8)
    rows = []
    for y, x, lab, f in items:
        a = np.asarray(Image.open(f).convert("RGB"))
        ph, pw = a.shape[:2]
        canvas[y:y + ph, x:x + pw] = a
        rows.append({"x": x, "y": y, "w": pw, "h": ph, "label": lab, "file": f.name})
    return write_pyramid(path, canvas, mpp, levels=levels), rows


def synthetic_slide(path: str | Path, *, grid: tuple[int, int] = (6, 8), seed: int = 0, mpp: float = 0.972,
                    margin: int = 96, tumour_fraction: float = 0.4, levels: int = 3,
                    fill: float = 0.8) -> tuple[Path, list[dict[str, Any]]]:
    """A slide of SynthPCam 96 px patches on a ``rows × cols`` grid with glass around.

    ``fill`` of the grid cells hold tissue (the others are glass); a tissue cell is tumour with
    probability ``tumour_fraction``, and its label is SynthPCam's centre rule. Rows of the truth
    table as in :func:`assemble_idc_slide`.
    """
    from medattn.data.synthetic import make_pcam_patch

    rng = np.random.default_rng(seed)
    rows_n, cols_n = grid
    H, W = 2 * margin + 96 * rows_n, 2 * margin + 96 * cols_n
    canvas = np.full((H, W, 3), 243, np.uint8)
    rows = []
    for r in range(rows_n):
        for c in range(cols_n):
            if rng.random() >= fill:
                continue
            img, _, lab = make_pcam_patch(rng, bool(rng.random() < tumour_fraction))
            y, x = margin + 96 * r, margin + 96 * c
            canvas[y:y + 96, x:x + 96] = img
            rows.append({"x": x, "y": y, "w": 96, "h": 96, "label": int(lab), "file": f"r{r}c{c}"})
    return write_pyramid(path, canvas, mpp, levels=levels), rows
