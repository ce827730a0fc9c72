"""Loader throughput: PCam h5 + training augmentation through a 2-worker DataLoader, against raw
h5py reading of the same patches and against the training step of ``patch_cnn_attention``.

The loader must not be the bottleneck: loader images/s >= 3x train-step images/s.

Usage: ``.venv/bin/python benchmarks/loader.py [--n 2048] [--batch 64] [--workers 2]``; it
writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
from _doc import replace_section  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
TITLE = "## Loader throughput (benchmarks/loader.py)"


def raw_h5py(root: Path, order: np.ndarray) -> float:
    """Images/s reading the same patches one by one with h5py (same random order), no transform."""
    import h5py

    from medattn.data.formats.pcam_h5 import pcam_files

    t = time.perf_counter()
    with h5py.File(pcam_files(root, "train")["x"], "r") as fx, h5py.File(pcam_files(root, "train")["y"], "r") as fy:
        x, y = fx["x"], fy["y"]
        for i in order:
            _ = np.asarray(x[int(i)]), np.asarray(y[int(i)])
    return len(order) / (time.perf_counter() - t)


def make_loader(root: Path, batch: int, workers: int):  # noqa: ANN201
    """PCamH5Dataset + histo training augmentation in a DataLoader with persistent workers."""
    from torch.utils.data import DataLoader

    from medattn.data.formats.pcam_h5 import PCamH5Dataset
    from medattn.data.transforms import build_transforms

    ds = PCamH5Dataset(root, "train", build_transforms("histo", train=True))
    return DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                      persistent_workers=workers > 0, drop_last=False)


def loader_epoch(dl) -> float:  # noqa: ANN001
    """Images/s of one epoch (workers already started)."""
    n, t = 0, time.perf_counter()
    for xb, _ in dl:
        n += len(xb)
    return n / (time.perf_counter() - t)


def train_step(batch: int, steps: int = 8, model=None) -> float:  # noqa: ANN001
    """Images/s of forward + backward + Adam step of patch_cnn_attention on 96x96 batches."""
    from medattn.models import create_model

    model = model or create_model("patch_cnn_attention")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    x = torch.randn(batch, 3, 96, 96)
    y = torch.randint(0, 2, (batch,)).float()
    model.train()
    for i in range(steps + 2):
        if i == 2:
            t = time.perf_counter()
        opt.zero_grad()
        loss = loss_fn(model(x).reshape(-1), y)
        loss.backward()
        opt.step()
    return batch * steps / (time.perf_counter() - t)


def _load() -> str:
    import os

    try:
        return " / ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def write_section(text: str) -> None:
    replace_section(TITLE, text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1024, help="SynthPCam training patches")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds (median)")
    ap.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    from medattn.data.synthetic import write_pcam

    with tempfile.TemporaryDirectory() as tmp:
        root = write_pcam(Path(tmp) / "pcam", {"train": a.n, "valid": 1, "test": 1}, seed=0)
        order = np.random.default_rng(0).permutation(a.n)
        from medattn.models import create_model

        model = create_model("patch_cnn_attention")
        dl = make_loader(root, a.batch, a.workers)
        loader_epoch(dl)  # start the workers once, as persistent workers do in training
        rounds = {"raw": [], "load": [], "step": []}
        for _ in range(a.rounds):  # interleaved, so load changes on a shared machine hit all three
            rounds["raw"].append(raw_h5py(root, order))
            rounds["load"].append(loader_epoch(dl))
            rounds["step"].append(train_step(a.batch, model=model))
        raw, load, step = (float(np.median(rounds[k])) for k in ("raw", "load", "step"))
    ratio = load / step
    cmd = "python benchmarks/loader.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = f"""{TITLE}

Command: `{cmd.strip()}` (SynthPCam, {a.n} training patches 96x96, batch {a.batch}, torch threads 2,
median of {a.rounds} interleaved rounds; load average during the run: {_load()}).

| path | images/s | ratio |
|---|---:|---:|
| raw h5py, patch by patch in shuffled order (no transform) | {raw:,.0f} | {raw / step:.1f}x train step |
| PCamH5Dataset + `build_transforms("histo", train=True)`, DataLoader {a.workers} workers | {load:,.0f} | {ratio:.1f}x train step |
| train step of `patch_cnn_attention` (forward + backward + Adam) | {step:,.0f} | 1.0x |

Loader / train step = **{ratio:.1f}x** (target >= 3x: {"met" if ratio >= 3 else "NOT met"}); the loader
keeps {100 * load / raw:.0f}% of raw h5py speed with augmentation on. The h5 files are chunked one patch per
chunk, so a random read inflates one patch; handles are opened lazily in each worker.
"""
    print(text)
    if not a.no_doc:
        write_section(text)
    return 0 if ratio >= 3 else 1


if __name__ == "__main__":
    sys.exit(main())
