"""Synthetic graded epithelium (healthy / mild / moderate / severe) with tissue masks.

Each image shows a band of epithelium over pink stroma, under a pale lumen. The grade is written
in the nuclei of the epithelium, as in oral/cervical dysplasia: with each grade the atypical
nuclei reach higher from the basal layer (lower third, two thirds, full thickness), grow larger,
darker, more irregular and more crowded. The tissue mask marks the epithelium (1) and is what a
segmenter should find before a classifier grades it.

Layout under ``out``: ``images/<k>_<grade>/<grade>_<i>.png``, ``masks/<k>_<grade>/<grade>_<i>.png``
(uint8, 1 = epithelium) and ``images/classes.txt`` with the classes in grade order. ``images/``
reads as ``folders``; ``out`` as ``seg_pairs``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medattn.data.images import write_image
from medattn.data.synthetic._paint import blend, paint_disk, smooth_noise
from medattn.io import atomic_write_text, ensure_dir

__all__ = ["GRADES", "make_graded", "write_graded"]

GRADES = ("0_healthy", "1_mild", "2_moderate", "3_severe")
_STROMA = np.array([0.93, 0.70, 0.80], np.float32)
_EPI = np.array([0.88, 0.66, 0.82], np.float32)
_LUMEN = np.array([0.96, 0.95, 0.97], np.float32)
_NUC = np.array([0.40, 0.25, 0.60], np.float32)
_NUC_DARK = np.array([0.22, 0.08, 0.40], np.float32)


def make_graded(rng: np.random.Generator, grade: int, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """One image of ``grade`` (0–3): ``(uint8 H×W×3, epithelium mask uint8 H×W)``."""
    s = size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    top = s * rng.uniform(0.12, 0.25) + s * 0.04 * np.sin(xx[0] / s * 2 * np.pi * rng.uniform(0.5, 1.5) + rng.uniform(0, 6))
    base = top + s * rng.uniform(0.40, 0.55) + s * 0.06 * np.sin(xx[0] / s * 2 * np.pi * rng.uniform(1, 2.5) + rng.uniform(0, 6))
    epi = (yy >= top[None, :]) & (yy < base[None, :])
    stroma = yy >= base[None, :]
    tex = smooth_noise(rng, s, s, cell=6)
    img = np.broadcast_to(_LUMEN, (s, s, 3)).copy()
    img[stroma] = (_STROMA * (0.88 + 0.15 * tex[..., None]))[stroma]
    img[epi] = (_EPI * (0.92 + 0.1 * tex[..., None]))[epi]
    # depth inside the epithelium: 0 at the basal layer, 1 at the surface
    depth = np.clip((base[None, :] - yy) / np.maximum(base - top, 1)[None, :], 0, 1)
    reach = (0.15, 0.38, 0.68, 1.0)[grade]
    normal = np.zeros((s, s), np.float32)
    atyp = np.zeros((s, s), np.float32)
    u = s / 96.0
    ys, xs = np.nonzero(epi)
    n_normal = int(len(ys) / (45 * u * u))
    for k in rng.integers(0, len(ys), n_normal):
        if depth[ys[k], xs[k]] < reach and grade > 0:
            continue
        r = 1.6 * u * (1.0 - 0.4 * depth[ys[k], xs[k]])  # nuclei flatten towards the surface
        paint_disk(normal, ys[k], xs[k], r * 0.7, r * 1.3, 0.0, rng.uniform(0.55, 0.7))
    zone = epi & (depth < reach)
    zy, zx = np.nonzero(zone)
    density = (90.0, 70.0, 55.0, 42.0)[grade]
    size_r = ((1.6, 2.0), (1.9, 2.5), (2.2, 3.0), (2.5, 3.6))[grade]
    irregular = (0.0, 0.08, 0.16, 0.25)[grade]
    for k in rng.integers(0, max(1, len(zy)), int(len(zy) / (density * u * u)) if len(zy) else 0):
        r = rng.uniform(*size_r) * u
        wob = rng.normal(0, irregular, 3).astype(np.float32) if irregular else None
        paint_disk(atyp, zy[k], zx[k], r * rng.uniform(0.8, 1.2), r * rng.uniform(0.8, 1.2), rng.uniform(0, np.pi),
                   rng.uniform(0.7, 0.8) + 0.05 * grade, wobble=wob)
    # a few stromal fibroblasts in every grade
    sy, sx = np.nonzero(stroma)
    for k in rng.integers(0, max(1, len(sy)), 6 if len(sy) else 0):
        paint_disk(normal, sy[k], sx[k], 1.0 * u, 2.5 * u, rng.uniform(0, np.pi), 0.6)
    chrom = (0.85 + 0.3 * smooth_noise(rng, s, s, cell=2))[..., None]
    img = blend(img, _NUC * chrom, normal)
    img = blend(img, (_NUC if grade == 0 else _NUC_DARK) * chrom, np.minimum(atyp, 1.0))
    img = img + rng.normal(0, 0.02, img.shape)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), epi.astype(np.uint8)


def write_graded(out: str | Path, n_per_class: int = 16, size: int = 96, seed: int = 0) -> Path:
    """Write ``n_per_class`` images per grade with their epithelium masks (deterministic per seed)."""
    root = ensure_dir(out)
    rng = np.random.default_rng(seed)
    for g, name in enumerate(GRADES):
        for i in range(n_per_class):
            img, mask = make_graded(rng, g, size)
            stem = f"{name.split('_', 1)[1]}_{i:04d}.png"
            write_image(root / "images" / name / stem, img)
            write_image(root / "masks" / name / stem, mask)
    atomic_write_text(root / "images" / "classes.txt", "\n".join(GRADES) + "\n")
    atomic_write_text(root / "SYNTHETIC.txt", f"synthetic graded epithelium seed={seed} n_per_class={n_per_class}\n")
    return root
