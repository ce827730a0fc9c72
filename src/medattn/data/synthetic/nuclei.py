"""Synthetic nuclei tiles: H&E-like RGB images, ``uint16`` instance masks and MoNuSeg XML.

Each nucleus is an irregular polygon; clusters are placed so that neighbours touch (the hard case
for instance separation). The instance mask is the rasterisation of exactly the polygons written
to the Aperio XML (later polygons win where they overlap), so the XML reader can be checked
against the mask pixel for pixel.

Layout under ``out``: ``images/tile_XXX.png``, ``masks/tile_XXX.png`` (uint16),
``annotations/tile_XXX.xml``. It reads as ``seg_pairs`` (images + masks) and as ``monuseg``
(images + XML).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medattn.data.formats.monuseg_xml import rasterise_polygons, write_aperio_xml
from medattn.data.images import write_image
from medattn.data.synthetic._paint import smooth_noise
from medattn.io import atomic_write_text, ensure_dir

__all__ = ["make_nuclei_tile", "write_nuclei", "nucleus_polygon"]

_STROMA = np.array([0.92, 0.72, 0.84], np.float32)
_NUC = np.array([0.36, 0.20, 0.55], np.float32)


def nucleus_polygon(rng: np.random.Generator, cy: float, cx: float, r: float, irregular: float = 0.12,
                    n_vertices: int = 24) -> np.ndarray:
    """``K×2`` ``(x, y)`` vertices of an irregular ellipse-like nucleus."""
    theta = np.linspace(0, 2 * np.pi, n_vertices, endpoint=False)
    k = np.arange(1, 4)[:, None]
    wob = 1 + (rng.normal(0, irregular, (3, 1)) * np.sin(k * theta + rng.uniform(0, 6, (3, 1)))).sum(0)
    a, b, ang = r * rng.uniform(0.9, 1.25), r * rng.uniform(0.7, 1.0), rng.uniform(0, np.pi)
    u, v = a * np.cos(theta) * wob, b * np.sin(theta) * wob
    x = cx + u * np.cos(ang) - v * np.sin(ang)
    y = cy + u * np.sin(ang) + v * np.cos(ang)
    return np.stack([x, y], 1)


def make_nuclei_tile(rng: np.random.Generator, size: int = 128, n_nuclei: int = 30,
                     radius: tuple[float, float] = (4.0, 7.0), touching: float = 0.5,
                     ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """One tile: ``(image uint8 H×W×3, instance mask uint16 H×W, polygons)``.

    Args:
        rng: random generator.
        size: tile side in pixels.
        n_nuclei: nuclei to place (some may be dropped if they do not fit).
        radius: nucleus radius range in pixels.
        touching: probability that a nucleus is placed against the previous one.
    """
    polys: list[np.ndarray] = []
    centres: list[tuple[float, float, float]] = []
    for _ in range(n_nuclei * 4):
        if len(polys) >= n_nuclei:
            break
        r = rng.uniform(*radius)
        if centres and rng.random() < touching:
            py, px, pr = centres[-1]
            ang = rng.uniform(0, 2 * np.pi)
            d = (pr + r) * rng.uniform(0.85, 0.98)
            cy, cx = py + d * np.sin(ang), px + d * np.cos(ang)
        else:
            cy, cx = rng.uniform(r, size - r, 2)
        if not (r <= cy < size - r and r <= cx < size - r):
            continue
        if any(np.hypot(cy - y, cx - x) < 0.8 * (r + q) for y, x, q in centres):
            continue
        centres.append((cy, cx, r))
        polys.append(nucleus_polygon(rng, cy, cx, r))
    mask, _ = rasterise_polygons(polys, (size, size))
    tex = smooth_noise(rng, size, size, cell=10)
    img = (0.88 + 0.12 * tex)[..., None] * _STROMA
    fg = mask > 0
    chrom = 0.8 + 0.4 * smooth_noise(rng, size, size, cell=2)
    shade = np.ones(len(polys) + 1, np.float32)
    shade[1:] = rng.uniform(0.8, 1.2, len(polys))
    nuc = _NUC[None, None, :] * (chrom * shade[mask])[..., None]
    img = np.where(fg[..., None], 0.15 * img + 0.85 * nuc, img)
    # a thin darker rim makes touching nuclei separable by eye, as in real H&E
    from scipy.ndimage import grey_erosion

    rim = fg & (grey_erosion(mask, size=3) != mask)
    img[rim] *= 0.8
    img = img + rng.normal(0, 0.02, img.shape)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), mask, polys


def write_nuclei(out: str | Path, n: int = 8, size: int = 128, seed: int = 0, n_nuclei: int = 30) -> Path:
    """Write ``n`` tiles (images, uint16 instance masks, Aperio XML) under ``out``.

    Deterministic per ``seed``; every file is written atomically.
    """
    root = ensure_dir(out)
    rng = np.random.default_rng(seed)
    for i in range(n):
        img, mask, polys = make_nuclei_tile(rng, size=size, n_nuclei=n_nuclei)
        stem = f"tile_{i:03d}"
        write_image(root / "images" / f"{stem}.png", img)
        write_image(root / "masks" / f"{stem}.png", mask)
        write_aperio_xml(root / "annotations" / f"{stem}.xml", polys)
    atomic_write_text(root / "SYNTHETIC.txt", f"synthetic nuclei seed={seed} n={n} size={size}\n")
    return root
