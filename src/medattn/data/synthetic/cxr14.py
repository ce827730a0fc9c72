"""Synthetic chest X-rays in the ChestX-ray14 layout.

Grayscale images with two dark lung fields, a bright mediastinum and heart, ribs and a
diaphragm; findings are drawn at random places inside the lungs:

- ``Nodule``: a small bright round spot; ``Mass``: a larger bright irregular blob;
- ``Effusion``: a bright fluid level filling a lung base; ``Pneumothorax``: a dark
  featureless rim at a lung apex (no ribs or vessels);
- ``Infiltration``: a hazy bright patch; ``Cardiomegaly``: an enlarged heart.

Written as the NIH release: ``images/<patient>_<follow-up>.png`` (8-bit grayscale),
``Data_Entry_2017.csv`` (same columns, ``|``-joined ``Finding Labels``, "No Finding"),
``BBox_List_2017.csv`` (one box per localised finding) and ``lesion_masks/`` with the true
finding masks; several images per patient.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from medattn.data.images import write_image
from medattn.data.synthetic._paint import blob_mask, smooth_noise
from medattn.io import atomic_write_text, ensure_dir

__all__ = ["SYNTH_FINDINGS", "make_cxr", "write_cxr14"]

SYNTH_FINDINGS = ("Nodule", "Mass", "Effusion", "Pneumothorax", "Infiltration", "Cardiomegaly")
_HEADER = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
           "View Position", "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]"]


def _lungs(s: int) -> tuple[np.ndarray, np.ndarray]:
    left = blob_mask(s, s, 0.50 * s, 0.31 * s, 0.33 * s, 0.15 * s, 0.0)
    right = blob_mask(s, s, 0.50 * s, 0.69 * s, 0.33 * s, 0.15 * s, 0.0)
    return left, right


def make_cxr(rng: np.random.Generator, findings: tuple[str, ...] | list[str], size: int = 128,
             ) -> tuple[np.ndarray, np.ndarray, dict[str, tuple[int, int, int, int]]]:
    """One image: ``(uint8 H×W, lesion label map uint8 H×W (index+1 of SYNTH_FINDINGS), boxes)``.

    ``boxes`` maps each localised finding to ``(x, y, w, h)`` in pixels.
    """
    s = size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    body = np.exp(-(((xx - 0.5) / 0.42) ** 6 + ((yy - 0.55) / 0.55) ** 6))
    img = 0.15 + 0.55 * body + 0.05 * smooth_noise(rng, s, s, cell=16)
    left, right = _lungs(s)
    lungs = left | right
    img[lungs] -= 0.38
    ribs = 0.5 + 0.5 * np.sin(yy * s / (0.075 * s) * 2 * np.pi + 3 * np.abs(xx - 0.5) + rng.uniform(0, 6))
    vessels = smooth_noise(rng, s, s, cell=3)
    img[lungs] += (0.07 * ribs + 0.05 * vessels)[lungs]
    heart_r = 0.13 * s * (1.5 if "Cardiomegaly" in findings else 1.0) * rng.uniform(0.95, 1.05)
    heart = blob_mask(s, s, 0.66 * s, 0.55 * s, heart_r * 0.85, heart_r, 0.3)
    img[heart] = np.maximum(img[heart], 0.62)
    diaphragm = yy > 0.80 + 0.04 * np.cos((xx - 0.5) * 6)
    img[diaphragm & (body > 0.3)] = np.maximum(img[diaphragm & (body > 0.3)], 0.6)
    lab = np.zeros((s, s), np.uint8)
    boxes: dict[str, tuple[int, int, int, int]] = {}
    for f in findings:
        side = left if rng.random() < 0.5 else right
        ys, xs = np.nonzero(side & ~heart)
        k = int(rng.integers(0, len(ys)))
        cy, cx = float(ys[k]), float(xs[k])
        if f == "Nodule":
            m = blob_mask(s, s, cy, cx, 0.025 * s, 0.025 * s, 0.0)
            img[m] += 0.30
        elif f == "Mass":
            m = blob_mask(s, s, cy, cx, 0.06 * s, 0.05 * s, rng.uniform(0, 3),
                          wobble=rng.normal(0, 0.15, 3).astype(np.float32))
            img[m] += 0.28
        elif f == "Effusion":
            base = np.nonzero(side.any(1))[0].max()
            m = side & (yy * s > base - 0.12 * s)
            img[m] = np.maximum(img[m], 0.55)
        elif f == "Pneumothorax":
            top = np.nonzero(side.any(1))[0].min()
            m = side & (yy * s < top + 0.12 * s)
            img[m] = 0.06 + 0.02 * smooth_noise(rng, s, s, 8)[m]
        elif f == "Infiltration":
            m = blob_mask(s, s, cy, cx, 0.09 * s, 0.07 * s, rng.uniform(0, 3)) & lungs
            img[m] += 0.15 * smooth_noise(rng, s, s, 4)[m] + 0.08
        else:  # Cardiomegaly: drawn with the heart
            m = heart
        lab[m & (lab == 0)] = SYNTH_FINDINGS.index(f) + 1
        ys, xs = np.nonzero(m)
        if len(ys):
            boxes[f] = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
    img = img + rng.normal(0, 0.015, img.shape)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), lab, boxes


def write_cxr14(out: str | Path, n_patients: int = 20, max_images_per_patient: int = 4, size: int = 128,
                seed: int = 0, p_finding: float = 0.5) -> Path:
    """Write a ChestX-ray14-format dataset under ``out`` (deterministic per ``seed``)."""
    root = ensure_dir(out)
    rng = np.random.default_rng(seed)
    entries, boxes_rows = [], []
    for pid in range(1, n_patients + 1):
        age, sex = int(rng.integers(20, 85)), "MF"[int(rng.integers(0, 2))]
        for fu in range(int(rng.integers(1, max_images_per_patient + 1))):
            found: list[str] = []
            if rng.random() < p_finding:
                k = 1 + int(rng.random() < 0.3)
                found = sorted(rng.choice(SYNTH_FINDINGS, size=k, replace=False).tolist())
            img, lab, boxes = make_cxr(rng, found, size)
            name = f"{pid:08d}_{fu:03d}.png"
            write_image(root / "images" / name, img)
            write_image(root / "lesion_masks" / name, lab)
            entries.append([name, "|".join(found) or "No Finding", fu, pid, age + fu, sex,
                            "PA" if rng.random() < 0.7 else "AP", size, size, 0.143, 0.143])
            boxes_rows += [[name, f, x, y, w, h, "", "", ""] for f, (x, y, w, h) in boxes.items()
                           if f != "Cardiomegaly" or rng.random() < 0.5]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(_HEADER)
    w.writerows(entries)
    atomic_write_text(root / "Data_Entry_2017.csv", buf.getvalue())
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["Image Index", "Finding Label", "Bbox [x", "y", "w", "h]", "", "", ""])
    w.writerows(boxes_rows)
    atomic_write_text(root / "BBox_List_2017.csv", buf.getvalue())
    atomic_write_text(root / "SYNTHETIC.txt", f"synthetic ChestX-ray14 seed={seed} patients={n_patients} size={size}\n")
    return root
