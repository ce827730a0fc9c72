"""Synthetic datasets written in the real formats, with known lesion masks."""

from __future__ import annotations

from medattn.data.synthetic.pcam import (
    PCamDifficulty,
    make_pcam_arrays,
    make_pcam_patch,
    write_pcam,
)

__all__ = ["PCamDifficulty", "make_pcam_arrays", "make_pcam_patch", "write_pcam"]
