"""Tissue detection on a low-resolution image of a slide.

Tissue is coloured and absorbs light; glass is white. The mask is Otsu's threshold on the HSV
saturation (default) or on the optical density (``-log(I / 255)`` averaged over RGB), extended by
hysteresis to paler tissue connected to it (down to a quarter of the threshold), with small holes
filled and specks removed. Tiles are kept when the share of their footprint covered by
tissue reaches ``--min-tissue``.
"""

from __future__ import annotations

import numpy as np

from medattn.errors import ConfigError

__all__ = ["tissue_mask", "tile_tissue_fraction", "TISSUE_METHODS"]

TISSUE_METHODS = ("saturation", "od")
_MIN_CONTRAST = {"saturation": 0.04, "od": 0.08}  # below this everywhere: a blank slide, no tissue


def tissue_mask(rgb: np.ndarray, method: str = "saturation", min_size_fraction: float = 1e-4,
                fill_holes_fraction: float = 1e-4) -> np.ndarray:
    """Boolean tissue mask of an ``H×W×3`` ``uint8`` image.

    Args:
        rgb: a low-resolution image of the slide (a pyramid level or thumbnail).
        method: ``"saturation"`` (Otsu on HSV saturation) or ``"od"`` (Otsu on optical density).
        min_size_fraction: tissue specks smaller than this share of the image are removed.
        fill_holes_fraction: holes smaller than this share of the image are filled.
    """
    from skimage.filters import apply_hysteresis_threshold, threshold_otsu
    from skimage.morphology import remove_small_holes, remove_small_objects

    if method not in TISSUE_METHODS:
        raise ConfigError(f"tissue method '{method}' is unknown; use one of {', '.join(TISSUE_METHODS)}")
    a = np.asarray(rgb, dtype=np.float32)[..., :3]
    if method == "saturation":
        mx, mn = a.max(-1), a.min(-1)
        v = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-6), 0.0)
    else:
        v = -np.log(np.clip(a, 1, 255) / 255.0).sum(-1) / 3.0
    n = v.size
    small, holes = max(1, int(min_size_fraction * n)), max(1, int(fill_holes_fraction * n))
    # blank: fewer pixels over the contrast floor than the smallest speck kept, whatever share of the
    # slide the tissue covers (a sparse slide with 0.5% tissue is not blank)
    if n == 0 or int(np.count_nonzero(v >= _MIN_CONTRAST[method])) < small:
        return np.zeros(v.shape, bool)
    t = max(float(threshold_otsu(v)), _MIN_CONTRAST[method])
    # hysteresis: pale tissue (fat, loose stroma) joined to clearly stained tissue is kept
    m = apply_hysteresis_threshold(v, max(t / 4, _MIN_CONTRAST[method]), t)
    try:  # scikit-image >= 0.26 (max_size removes sizes <= the value)
        m = remove_small_objects(m, max_size=small - 1) if small > 1 else m
        return remove_small_holes(m, max_size=holes - 1) if holes > 1 else m
    except TypeError:
        return remove_small_holes(remove_small_objects(m, small), holes)


def tile_tissue_fraction(mask: np.ndarray, xs: np.ndarray, ys: np.ndarray, size: float, scale: float) -> np.ndarray:
    """Share of tissue under each tile, from a mask ``scale`` level-0 pixels per mask pixel.

    Args:
        mask: boolean tissue mask.
        xs, ys: level-0 top-left corners of the tiles.
        size: tile edge in level-0 pixels.
        scale: level-0 pixels per mask pixel.
    """
    ii = np.pad(np.cumsum(np.cumsum(mask.astype(np.float64), 0), 1), ((1, 0), (1, 0)))
    h, w = mask.shape
    x0 = np.clip(np.floor(np.asarray(xs) / scale).astype(int), 0, w)
    y0 = np.clip(np.floor(np.asarray(ys) / scale).astype(int), 0, h)
    x1 = np.clip(np.ceil((np.asarray(xs) + size) / scale).astype(int), 0, w)
    y1 = np.clip(np.ceil((np.asarray(ys) + size) / scale).astype(int), 0, h)
    x1, y1 = np.maximum(x1, x0 + 1).clip(max=w), np.maximum(y1, y0 + 1).clip(max=h)
    area = np.maximum((x1 - x0) * (y1 - y0), 1)
    s = ii[y1, x1] - ii[y0, x1] - ii[y1, x0] + ii[y0, x0]
    return s / area
