"""Synthetic datasets written in the real formats, with known lesion masks."""

from __future__ import annotations

from pathlib import Path

from medattn.data.synthetic.cxr14 import SYNTH_FINDINGS, make_cxr, write_cxr14
from medattn.data.synthetic.folders import CELL_CLASSES, make_cell, write_cell_folders
from medattn.data.synthetic.graded import GRADES, make_graded, write_graded
from medattn.data.synthetic.nuclei import make_nuclei_tile, write_nuclei
from medattn.data.synthetic.pcam import (
    PCamDifficulty,
    make_pcam_arrays,
    make_pcam_patch,
    write_pcam,
)

__all__ = [
    "PCamDifficulty", "make_pcam_arrays", "make_pcam_patch", "write_pcam",
    "make_nuclei_tile", "write_nuclei",
    "CELL_CLASSES", "make_cell", "write_cell_folders",
    "SYNTH_FINDINGS", "make_cxr", "write_cxr14",
    "GRADES", "make_graded", "write_graded",
    "SYNTH_KINDS", "write_synthetic",
]

SYNTH_KINDS = ("pcam", "nuclei", "folders", "cxr14", "graded")


def write_synthetic(kind: str, out: str | Path, n: int = 64, seed: int = 0) -> Path:
    """Write the non-PCam synthetic kinds with about ``n`` items in total.

    ``nuclei``: ``n`` tiles; ``folders``: ``n // 5`` cells per class; ``cxr14``: ``n // 2``
    patients (1–4 images each); ``graded``: ``n // 4`` images per grade.
    """
    from medattn.errors import ConfigError

    if n < 1:
        raise ConfigError(f"--n must be >= 1, got {n}")
    if kind == "nuclei":
        return write_nuclei(out, n=n, seed=seed)
    if kind == "folders":
        return write_cell_folders(out, n_per_class=max(1, n // 5), seed=seed)
    if kind == "cxr14":
        return write_cxr14(out, n_patients=max(2, n // 2), seed=seed)
    if kind == "graded":
        return write_graded(out, n_per_class=max(1, n // 4), seed=seed)
    raise ConfigError(f"unknown synthetic kind '{kind}'; valid kinds: {', '.join(SYNTH_KINDS)}")
