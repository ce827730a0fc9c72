"""SynthPCam: H&E-like 96×96 patches written exactly as the PCam HDF5 release.

Pink textured stroma with small round purple nuclei; a tumour is a region of larger, darker,
irregular and crowded nuclei. The label follows PCam's own rule: 1 iff tumour pixels fall in
the centre 32×32 region, so a model must look at the centre, and negatives may carry tumour in
the periphery (distractors) or dense clusters of small dark lymphocytes in the centre.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from medattn.data.synthetic._paint import blend, blob_mask, paint_disk, smooth_noise
from medattn.io import atomic_path, atomic_write_text, ensure_dir

__all__ = ["PCamDifficulty", "make_pcam_patch", "make_pcam_arrays", "write_pcam", "PCAM_SPLITS", "pcam_filename"]

PCAM_SPLITS = ("train", "valid", "test")
SIZE = 96
CENTRE = slice(32, 64)

_STROMA = np.array([0.93, 0.70, 0.82], np.float32)
_HEMA = np.array([0.42, 0.24, 0.60], np.float32)
_HEMA_DARK = np.array([0.24, 0.08, 0.42], np.float32)
_LYMPHO = np.array([0.20, 0.10, 0.35], np.float32)


def pcam_filename(split: str, kind: str) -> str:
    """Official file name, e.g. ``camelyonpatch_level_2_split_train_x.h5``."""
    return f"camelyonpatch_level_2_split_{split}_{kind}.h5"


@dataclass(frozen=True)
class PCamDifficulty:
    """Knobs of the generator.

    Attributes:
        tumour_size: scale of the tumour region radius (1.0 ≈ 10–20 px).
        contrast: how much darker and larger tumour nuclei are than normal ones (0–1].
        distractors: probability that a negative has a peripheral tumour or a central
            lymphocyte cluster.
        noise: pixel noise standard deviation (0–1 intensity units).
        positive_fraction: share of positive patches.
    """

    tumour_size: float = 1.0
    contrast: float = 1.0
    distractors: float = 0.5
    noise: float = 0.03
    positive_fraction: float = 0.5


def _stroma(rng: np.random.Generator) -> np.ndarray:
    tex = smooth_noise(rng, SIZE, SIZE, cell=12)
    fine = smooth_noise(rng, SIZE, SIZE, cell=3)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    ang = rng.uniform(0, np.pi)
    fibres = 0.5 + 0.5 * np.sin((xx * np.cos(ang) + yy * np.sin(ang)) * rng.uniform(0.4, 0.8) + 6 * tex)
    shade = 0.85 + 0.15 * tex + 0.06 * (fibres - 0.5) + 0.05 * (fine - 0.5)
    tint = _STROMA * rng.uniform(0.95, 1.04, 3).astype(np.float32)
    img = np.clip(shade[..., None] * tint[None, None, :], 0, 1)
    # occasional white space (fat / lumen)
    if rng.random() < 0.3:
        m = blob_mask(SIZE, SIZE, rng.uniform(0, SIZE), rng.uniform(0, SIZE),
                      rng.uniform(6, 14), rng.uniform(6, 14), rng.uniform(0, np.pi))
        img[m] = 0.6 * img[m] + 0.4 * np.array([0.97, 0.94, 0.96], np.float32)
    return img


def _scatter_nuclei(
    rng: np.random.Generator, alpha: np.ndarray, n: int, radius: tuple[float, float],
    value: tuple[float, float], region: np.ndarray | None = None, irregular: float = 0.0,
) -> None:
    if region is not None:
        ys, xs = np.nonzero(region)
        if len(ys) == 0:
            return
        idx = rng.integers(0, len(ys), n)
        cys = ys[idx] + rng.uniform(-0.5, 0.5, n)
        cxs = xs[idx] + rng.uniform(-0.5, 0.5, n)
    else:
        cys = rng.uniform(0, SIZE, n)
        cxs = rng.uniform(0, SIZE, n)
    for cy, cx in zip(cys, cxs, strict=True):
        r = rng.uniform(*radius)
        wob = rng.normal(0, irregular, 3).astype(np.float32) if irregular > 0 else None
        paint_disk(alpha, cy, cx, r * rng.uniform(0.8, 1.2), r * rng.uniform(0.8, 1.2),
                   rng.uniform(0, np.pi), rng.uniform(*value), wobble=wob)


def _tumour_region(rng: np.random.Generator, positive: bool, d: PCamDifficulty) -> np.ndarray:
    for _ in range(40):
        ry = rng.uniform(12, 24) * d.tumour_size
        rx = ry * rng.uniform(0.6, 1.4)
        if positive:
            # anywhere, as long as the region reaches into the centre window (PCam's rule);
            # the patch centre itself is often outside the tumour
            cy, cx = rng.uniform(14, 82, 2)
        else:
            side = rng.integers(0, 4)
            far = rng.uniform(0, 12)
            along = rng.uniform(0, SIZE)
            cy, cx = [(far, along), (SIZE - far, along), (along, far), (along, SIZE - far)][side]
        m = blob_mask(SIZE, SIZE, cy, cx, ry, rx, rng.uniform(0, np.pi),
                      wobble=rng.normal(0, 0.12, 4).astype(np.float32))
        hits_centre = bool(m[CENTRE, CENTRE].any())
        if hits_centre == positive and m.any():
            return m
    return np.zeros((SIZE, SIZE), bool)


def make_pcam_patch(
    rng: np.random.Generator, positive: bool, difficulty: PCamDifficulty | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """One patch.

    Returns:
        ``(image uint8 96×96×3, tumour mask uint8 96×96, label)`` where the label is computed
        from the mask by PCam's centre rule, not from ``positive``.
    """
    d = difficulty or PCamDifficulty()
    img = _stroma(rng)
    normal = np.zeros((SIZE, SIZE), np.float32)
    _scatter_nuclei(rng, normal, int(rng.integers(12, 30)), (1.6, 2.6), (0.55, 0.75))
    tumour = np.zeros((SIZE, SIZE), np.float32)
    region = np.zeros((SIZE, SIZE), bool)
    if positive or rng.random() < d.distractors * 0.6:
        region = _tumour_region(rng, positive, d)
    if region.any():
        c = d.contrast
        n = max(4, int(region.sum() / rng.uniform(55, 80)))
        _scatter_nuclei(rng, tumour, n, (2.2 + 1.0 * c, 2.8 + 1.6 * c), (0.75 + 0.15 * c, 0.8 + 0.18 * c),
                        region=region, irregular=0.25 * c)
        img[region] = img[region] * 0.93 + 0.07 * _HEMA
    lympho = np.zeros((SIZE, SIZE), np.float32)
    if not positive and rng.random() < d.distractors * 0.5:
        cl = blob_mask(SIZE, SIZE, rng.uniform(36, 60), rng.uniform(36, 60), rng.uniform(6, 11),
                       rng.uniform(6, 11), 0.0)
        _scatter_nuclei(rng, lympho, int(cl.sum() / 7), (1.3, 1.9), (0.85, 0.95), region=cl)
    chrom = 0.85 + 0.3 * smooth_noise(rng, SIZE, SIZE, cell=2)
    img = blend(img, _HEMA * chrom[..., None], normal)
    img = blend(img, _HEMA_DARK * chrom[..., None], np.minimum(tumour, 1.0))
    img = blend(img, _LYMPHO, lympho)
    img = img + rng.normal(0, d.noise, img.shape).astype(np.float32)
    out = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    mask = region.astype(np.uint8)
    label = int(mask[CENTRE, CENTRE].any())
    return out, mask, label


def make_pcam_arrays(
    n: int, seed: int, difficulty: PCamDifficulty | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` patches: ``x`` N×96×96×3 uint8, ``y`` N uint8, ``mask`` N×96×96 uint8."""
    d = difficulty or PCamDifficulty()
    rng = np.random.default_rng(seed)
    x = np.empty((n, SIZE, SIZE, 3), np.uint8)
    m = np.empty((n, SIZE, SIZE), np.uint8)
    y = np.empty(n, np.uint8)
    for i in range(n):
        x[i], m[i], y[i] = make_pcam_patch(rng, bool(rng.random() < d.positive_fraction), d)
    return x, y, m


def _write_h5(path: Path, key: str, arr: np.ndarray) -> None:
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            # one patch per chunk: random access reads (and inflates) only the patch it needs
            chunks = (1,) + arr.shape[1:] if len(arr) else None
            f.create_dataset(key, data=arr, chunks=chunks, compression="gzip", compression_opts=1)


def write_pcam(
    out: str | Path,
    sizes: dict[str, int] | None = None,
    seed: int = 0,
    difficulty: PCamDifficulty | None = None,
    patches_per_slide: int = 16,
) -> Path:
    """Write SynthPCam in the official layout under ``out``.

    Files per split: ``..._x.h5`` (key ``x``, N×96×96×3 uint8), ``..._y.h5`` (key ``y``,
    N×1×1×1 uint8), ``..._mask.h5`` (key ``mask``, N×96×96 uint8) and ``..._meta.csv``
    (``wsi`` = the synthetic slide a patch came from; slides never cross splits).
    """
    sizes = sizes or {"train": 2048, "valid": 512, "test": 512}
    d = difficulty or PCamDifficulty()
    root = ensure_dir(out)
    for i, split in enumerate(PCAM_SPLITS):
        n = int(sizes.get(split, 0))
        x, y, m = make_pcam_arrays(n, seed * 1000 + i, d)
        _write_h5(root / pcam_filename(split, "x"), "x", x)
        _write_h5(root / pcam_filename(split, "y"), "y", y.reshape(n, 1, 1, 1))
        _write_h5(root / pcam_filename(split, "mask"), "mask", m)
        rows = ["coord_y,coord_x,tumor_patch,center_tumor_patch,wsi"]
        for j in range(n):
            rows.append(f"0,0,{bool(m[j].any())},{bool(y[j])},synth_{split}_{j // patches_per_slide:04d}")
        atomic_write_text(root / f"camelyonpatch_level_2_split_{split}_meta.csv", "\n".join(rows) + "\n")
    atomic_write_text(
        root / "SYNTHETIC.txt",
        f"SynthPCam seed={seed} sizes={sizes} difficulty={asdict(d)}\n",
    )
    return root
