"""Synthetic cytology cells in one folder per class (SIPaKMeD-like, 5 classes).

Classes differ the way the real ones do, in shape, size, nuclear/cytoplasm ratio and texture:

- ``im_Superficial-Intermediate``: large angular flat cell, pale cytoplasm, tiny dark nucleus;
- ``im_Parabasal``: small round cell, dense cytoplasm, large round nucleus;
- ``im_Koilocytotic``: medium cell, enlarged irregular nucleus inside a clear perinuclear halo;
- ``im_Dyskeratotic``: small orange keratinised cell(s), dark irregular nucleus, often in pairs;
- ``im_Metaplastic``: oval cell with vacuolated (spotted) cytoplasm and a central nucleus.

Files are PNG, with every third one BMP (as in SIPaKMeD); ``junk=True`` adds ``Thumbs.db`` and
``._`` files that a reader must ignore.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medattn.data.images import write_image
from medattn.data.synthetic._paint import blend, blob_mask, smooth_noise
from medattn.io import atomic_write_bytes, atomic_write_text, ensure_dir

__all__ = ["CELL_CLASSES", "make_cell", "write_cell_folders"]

CELL_CLASSES = ("im_Dyskeratotic", "im_Koilocytotic", "im_Metaplastic", "im_Parabasal",
                "im_Superficial-Intermediate")
_BG = np.array([0.86, 0.88, 0.90], np.float32)


def _cell(rng: np.random.Generator, s: int, cy: float, cx: float, r: float, aspect: float, wob: float) -> np.ndarray:
    return blob_mask(s, s, cy, cx, r * aspect, r, rng.uniform(0, np.pi),
                     wobble=rng.normal(0, wob, 4).astype(np.float32) if wob > 0 else None)


def make_cell(rng: np.random.Generator, cls: int, size: int = 64) -> np.ndarray:
    """One ``size×size`` RGB ``uint8`` image of class ``cls`` (index into :data:`CELL_CLASSES`)."""
    s = size
    c = s / 2 + rng.normal(0, s * 0.04, 2)
    img = np.broadcast_to(_BG, (s, s, 3)) * (0.95 + 0.05 * smooth_noise(rng, s, s, 8))[..., None]
    tex = smooth_noise(rng, s, s, cell=3)
    name = CELL_CLASSES[cls]
    u = s / 64.0
    if name == "im_Superficial-Intermediate":
        cyto = _cell(rng, s, *c, 24 * u, rng.uniform(0.8, 1.2), 0.18)
        col, nuc_r, nuc_col, halo = np.array([0.93, 0.75, 0.80]), 2.5 * u, np.array([0.15, 0.1, 0.3]), 0
    elif name == "im_Parabasal":
        cyto = _cell(rng, s, *c, 12 * u, rng.uniform(0.9, 1.1), 0.02)
        col, nuc_r, nuc_col, halo = np.array([0.45, 0.70, 0.72]), 7 * u, np.array([0.25, 0.2, 0.45]), 0
    elif name == "im_Koilocytotic":
        cyto = _cell(rng, s, *c, 19 * u, rng.uniform(0.8, 1.2), 0.1)
        col, nuc_r, nuc_col, halo = np.array([0.60, 0.78, 0.78]), 5 * u, np.array([0.22, 0.12, 0.35]), 9 * u
    elif name == "im_Dyskeratotic":
        cyto = _cell(rng, s, *c, 10 * u, rng.uniform(1.0, 1.4), 0.12)
        if rng.random() < 0.6:  # a second cell touching the first
            off = rng.normal(0, 1, 2)
            off = off / (np.linalg.norm(off) + 1e-6) * 16 * u
            cyto |= _cell(rng, s, c[0] + off[0], c[1] + off[1], 9 * u, 1.2, 0.12)
        col, nuc_r, nuc_col, halo = np.array([0.95, 0.55, 0.30]), 3.5 * u, np.array([0.12, 0.05, 0.15]), 0
    else:  # im_Metaplastic
        cyto = _cell(rng, s, *c, 15 * u, rng.uniform(1.1, 1.4), 0.05)
        col, nuc_r, nuc_col, halo = np.array([0.50, 0.65, 0.80]), 5 * u, np.array([0.25, 0.18, 0.45]), 0
    col = (col * rng.uniform(0.93, 1.07, 3)).astype(np.float32)
    shade = (0.85 + 0.25 * tex)[..., None]
    img = blend(img, col * shade, cyto.astype(np.float32) * 0.9)
    if name == "im_Metaplastic":  # vacuoles
        for _ in range(int(rng.integers(5, 10))):
            ys, xs = np.nonzero(cyto)
            k = rng.integers(0, len(ys))
            v = blob_mask(s, s, ys[k], xs[k], 1.8 * u, 1.8 * u, 0.0) & cyto
            img = blend(img, np.array([0.9, 0.92, 0.95], np.float32), v.astype(np.float32) * 0.7)
    if halo:
        hm = blob_mask(s, s, *c, halo, halo * rng.uniform(0.8, 1.1), rng.uniform(0, np.pi)) & cyto
        img = blend(img, np.array([0.95, 0.96, 0.97], np.float32), hm.astype(np.float32) * 0.85)
    irregular = 0.2 if name in ("im_Koilocytotic", "im_Dyskeratotic") else 0.03
    nuc = _cell(rng, s, *c, nuc_r, rng.uniform(0.8, 1.2), irregular)
    chrom = (0.8 + 0.4 * smooth_noise(rng, s, s, 2))[..., None]
    img = blend(img, nuc_col.astype(np.float32) * chrom, nuc.astype(np.float32) * 0.95)
    img = img + rng.normal(0, 0.015, img.shape)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def write_cell_folders(out: str | Path, n_per_class: int = 20, size: int = 64, seed: int = 0,
                       junk: bool = False) -> Path:
    """Write ``n_per_class`` cells per class as ``out/<class>/<class>_<i>.png|bmp``.

    Deterministic per ``seed``; each file is written atomically.
    """
    root = ensure_dir(out)
    rng = np.random.default_rng(seed)
    for k, name in enumerate(CELL_CLASSES):
        for i in range(n_per_class):
            ext = "bmp" if i % 3 == 2 else "png"
            write_image(root / name / f"{name[3:]}_{i:04d}.{ext}", make_cell(rng, k, size))
    if junk:
        atomic_write_bytes(root / CELL_CLASSES[0] / "Thumbs.db", b"\x00" * 16)
        atomic_write_bytes(root / CELL_CLASSES[1] / "._resource_fork.png", b"\x00\x05\x16\x07")
        atomic_write_text(root / CELL_CLASSES[2] / "notes.txt", "not an image\n")
    atomic_write_text(root / "SYNTHETIC.txt", f"synthetic cell folders seed={seed} n_per_class={n_per_class}\n")
    return root
