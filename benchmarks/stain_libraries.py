"""Compare torchstain and torch-staintools for medattn's stain normalisation (issue 16, part 3).

Times Macenko fit + transform on real H&E: 50×50 IDC patches and 256×256 MoNuSeg crops, checks
tissue-poor patches (blank white, a few stained pixels) and whether fitted parameters can be set
from plain numbers. One thread, CPU. Needs both libraries (``pip install torchstain==1.4.1
torch-staintools==1.0.7``); medattn depends on torch-staintools only, because torchstain's wheel
installs a top-level ``tests`` package that shadows the project's. Run:
``python benchmarks/stain_libraries.py``.
"""

from __future__ import annotations

import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
N = 8


def _idc(n: int) -> list[np.ndarray]:
    files = sorted((DATA / "breast_idc" / "images").rglob("*.png"))[:: 997][:n]
    return [np.asarray(Image.open(f).convert("RGB").resize((50, 50))) for f in files]


def _monuseg(n: int) -> list[np.ndarray]:
    files = sorted((DATA / "monuseg_train_subset" / "images").glob("*"))[:n]
    return [np.asarray(Image.open(f).convert("RGB"))[300:556, 300:556] for f in files]


def _odd() -> dict[str, np.ndarray]:
    white = np.full((50, 50, 3), 250, np.uint8)
    few = white.copy()
    few[20:23, 20:23] = (120, 60, 150)
    return {"white": white, "few_pixels": few, "black": np.zeros((50, 50, 3), np.uint8)}


def _time(fn, reps: int = 3) -> float:
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def bench_torchstain(ref: np.ndarray, imgs: list[np.ndarray]) -> dict[str, object]:
    import torchstain

    n = torchstain.normalizers.MacenkoNormalizer(backend="torch")
    tref = torch.from_numpy(ref).permute(2, 0, 1)
    fit = _time(lambda: n.fit(tref))
    ts = [torch.from_numpy(i).permute(2, 0, 1) for i in imgs]
    tr = _time(lambda: [n.normalize(t, stains=False) for t in ts]) / len(ts)
    return {"fit_ms": fit * 1e3, "transform_ms": tr * 1e3}


def bench_staintools(ref: np.ndarray, imgs: list[np.ndarray]) -> dict[str, object]:
    from torch_staintools.normalizer import NormalizerBuilder

    n = NormalizerBuilder.build("macenko", concentration_solver="qr")
    tref = torch.from_numpy(ref).permute(2, 0, 1)[None].float() / 255
    fit = _time(lambda: n.fit(tref))
    ts = [torch.from_numpy(i).permute(2, 0, 1)[None].float() / 255 for i in imgs]
    tr = _time(lambda: [n.transform(t) for t in ts]) / len(ts)
    batch = _time(lambda: n.transform(torch.cat(ts))) / len(ts)
    return {"fit_ms": fit * 1e3, "transform_ms": tr * 1e3, "batched_transform_ms": batch * 1e3}


def robustness() -> dict[str, dict[str, str]]:
    import torchstain
    from torch_staintools.normalizer import NormalizerBuilder

    out: dict[str, dict[str, str]] = {}
    a = torchstain.normalizers.MacenkoNormalizer(backend="torch")
    b = NormalizerBuilder.build("macenko", concentration_solver="qr")
    b.fit(torch.from_numpy(_monuseg(1)[0]).permute(2, 0, 1)[None].float() / 255)
    for name, img in _odd().items():
        row = {}
        try:
            r, _, _ = a.normalize(torch.from_numpy(img).permute(2, 0, 1), stains=False)
            row["torchstain"] = f"ok, finite={bool(torch.isfinite(r.float()).all())}"
        except Exception as exc:  # noqa: BLE001
            row["torchstain"] = f"raises {type(exc).__name__}"
        try:
            r = b.transform(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255)
            row["torch-staintools"] = f"ok, finite={bool(torch.isfinite(r).all())}"
        except Exception as exc:  # noqa: BLE001
            row["torch-staintools"] = f"raises {type(exc).__name__}"
        out[name] = row
    return out


def main() -> None:
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    for name, imgs in (("IDC 50×50", _idc(N)), ("MoNuSeg 256×256", _monuseg(N))):
        ref = imgs[0]
        print(name, "torchstain", bench_torchstain(ref, imgs[1:]))
        print(name, "torch-staintools", bench_staintools(ref, imgs[1:]))
    for k, v in robustness().items():
        print("tissue-poor", k, v)


if __name__ == "__main__":
    main()
