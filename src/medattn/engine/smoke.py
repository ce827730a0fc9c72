"""``--smoke``: shrink any recipe to seconds and, without ``--data``, write tiny synthetic data in
the recipe's real format.

Synthetic data come from :mod:`medattn.data.synthetic` when it has a writer for the format;
otherwise SynthPCam patches (with their known lesion masks) are re-packed into the format: class
folders, a CSV manifest, IDC file names, a CXR14 ``Data_Entry_2017.csv``, image/mask pairs or
MoNuSeg-style Aperio XML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medattn.io import atomic_write_text, ensure_dir

__all__ = ["smoke_overrides", "write_smoke_data", "SMOKE_STAMP"]

SMOKE_STAMP = "SMOKE_DATA.txt"


def smoke_overrides(raw: dict[str, Any]) -> dict[str, Any]:
    """Dotted overrides that make ``raw`` (a recipe mapping) run in seconds on 2 CPU cores,
    followed by the recipe's own ``smoke:`` section."""
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    size = data.get("image_size", 96)
    task = (raw.get("task") or {}).get("type") if isinstance(raw.get("task"), dict) else None
    out: dict[str, Any] = {
        "trainer.max_epochs": 2, "trainer.batch_size": 8, "trainer.limit_train_batches": 2,
        "trainer.early_stopping.enabled": False, "trainer.progress": False,
        "trainer.precision": "32", "trainer.accelerator": "cpu",
        "evaluation.n_boot": 20, "data.num_workers": 0, "data.max_items": 16,
        "search.max_epochs": 1,
    }
    if isinstance(size, int) and not isinstance(size, bool):  # else validation names the field
        out["data.image_size"] = min(size, 64 if task == "segmentation" else 48)
    if task == "segmentation":
        out["data.options.eval_max_size"] = 64
    out.update(raw.get("smoke") or {})
    return out


def _classes(raw_names: list[str] | None, k: int) -> list[str]:
    return list(raw_names or [f"class_{i}" for i in range(k)])[:k]


def _patches(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from medattn.data.synthetic import PCamDifficulty, make_pcam_arrays

    return make_pcam_arrays(n, seed, PCamDifficulty(contrast=1.0))


def _save_png(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    ensure_dir(path.parent)
    Image.fromarray(arr).save(path)


def _graded(x: np.ndarray, y: np.ndarray, m: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k classes from binary patches: class = tumour/normal × a tint the model can learn."""
    lab = (y.astype(int) + 2 * rng.integers(0, max(1, k // 2 + 1), len(y))) % k
    tint = np.linspace(-40, 40, k)
    for i in range(len(x)):
        x[i] = np.clip(x[i].astype(int) + np.array([tint[lab[i]], 0, -tint[lab[i]]]).astype(int), 0, 255)
    return lab


def write_smoke_data(fmt: str, dest: str | Path, *, seed: int = 0, class_names: list[str] | None = None,
                     task: str = "binary", n: int = 72) -> Path:
    """Write tiny synthetic data in format ``fmt`` under ``dest`` (reused when already there)."""
    root = ensure_dir(dest)
    want = f"fmt={fmt} task={task} n={n} seed={seed} classes={class_names}\n"
    stamp = root / SMOKE_STAMP
    if stamp.is_file() and stamp.read_text() == want:
        return _data_path(fmt, root)
    rng = np.random.default_rng(seed)
    if fmt == "pcam":
        from medattn.data.synthetic import write_pcam

        write_pcam(root, {"train": n, "valid": n // 3, "test": n // 3}, seed=seed)
    else:
        x, y, m = _patches(n, seed)
        if fmt == "folders":
            k = len(class_names) if class_names else 3
            names = _classes(class_names, k)
            lab = _graded(x, y, m, k, rng)
            for i in range(n):
                _save_png(root / names[lab[i]] / f"cell_{i:04d}.png", x[i])
        elif fmt == "csv":
            rows = ["path,label,patient"]
            for i in range(n):
                _save_png(root / "images" / f"img_{i:04d}.png", x[i])
                rows.append(f"images/img_{i:04d}.png,{'tumour' if y[i] else 'normal'},p{i // 4:03d}")
            atomic_write_text(root / "manifest.csv", "\n".join(rows) + "\n")
        elif fmt == "idc":
            for i in range(n):
                pid = 10250 + i // 6
                _save_png(root / str(pid) / str(int(y[i])) / f"{pid}_idx5_x{50 * (i % 6)}_y0_class{int(y[i])}.png", x[i])
        elif fmt == "cxr14":
            _write_cxr14(root, x, y, m, rng)
        elif fmt in ("seg_pairs", "monuseg"):
            _write_seg(root, fmt, x, m, rng)
        else:
            from medattn.errors import ConfigError

            raise ConfigError(f"field 'data.format': no synthetic data for format '{fmt}'")
    atomic_write_text(stamp, want)
    return _data_path(fmt, root)


def _data_path(fmt: str, root: Path) -> Path:
    return root / "manifest.csv" if fmt == "csv" else root


def _write_cxr14(root: Path, x: np.ndarray, y: np.ndarray, m: np.ndarray, rng: np.random.Generator) -> None:
    from medattn.data.formats.cxr14 import FINDINGS

    rows = ["Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position"]
    for i in range(len(x)):
        name = f"{i:08d}_000.png"
        grey = x[i].mean(2).astype(np.uint8)
        found = [FINDINGS[int(k)] for k in rng.choice(len(FINDINGS), size=int(rng.integers(0, 3)), replace=False)]
        if y[i]:
            found.append("Mass")
        labels = "|".join(sorted(set(found))) or "No Finding"
        _save_png(root / "images" / name, grey)
        rows.append(f"{name},{labels},0,{i // 3},50,M,PA")
    atomic_write_text(root / "Data_Entry_2017.csv", "\n".join(rows) + "\n")


def _write_seg(root: Path, fmt: str, x: np.ndarray, m: np.ndarray, rng: np.random.Generator) -> None:
    from scipy import ndimage

    n = max(4, len(x) // 4)
    for i in range(n):  # 2×2 mosaics of 96 px patches: 192 px tiles with several "nuclei"
        idx = rng.integers(0, len(x), 4)
        img = np.concatenate([np.concatenate([x[idx[0]], x[idx[1]]], 1), np.concatenate([x[idx[2]], x[idx[3]]], 1)], 0)
        fg = np.concatenate([np.concatenate([m[idx[0]], m[idx[1]]], 1), np.concatenate([m[idx[2]], m[idx[3]]], 1)], 0) > 0
        inst = ndimage.label(fg)[0].astype(np.uint16)
        if fmt == "seg_pairs":
            _save_png(root / "images" / f"tile_{i:03d}.png", img)
            _save_png(root / "masks" / f"tile_{i:03d}.png", inst)
        else:
            from skimage.measure import find_contours

            from medattn.data.formats.monuseg_xml import write_aperio_xml

            polys = []
            for k in range(1, int(inst.max()) + 1):
                cs = find_contours(np.pad(inst == k, 1).astype(float), 0.5)
                if cs:
                    c = max(cs, key=len) - 1
                    polys.append(np.stack([c[:, 1], c[:, 0]], 1))
            _save_png(root / "Tissue_Images" / f"TCGA-SYN-{i:03d}.png", img)
            write_aperio_xml(root / "Annotations" / f"TCGA-SYN-{i:03d}.xml", polys)
