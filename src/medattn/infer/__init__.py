"""Inference on inputs of any size: one tiled core (:mod:`.tiling`), test-time augmentation
(:mod:`.tta`), instances, ``medattn predict`` and ``medattn slide``.

Below the engine and the bundle (both call it), above models and metrics.
"""

from __future__ import annotations

from medattn.infer.tiling import (
    aggregate_tiles,
    class_probs,
    image_tiles,
    model_probs_fn,
    sliding_window_probs,
    tile_boxes,
    tile_starts,
    tiled_dense_probs,
)
from medattn.infer.tta import DIHEDRAL, FLIPS, dihedral_mean

__all__ = [
    "tile_starts", "tile_boxes", "tiled_dense_probs", "image_tiles", "aggregate_tiles", "sliding_window_probs",
    "model_probs_fn", "class_probs", "dihedral_mean", "DIHEDRAL", "FLIPS",
]
