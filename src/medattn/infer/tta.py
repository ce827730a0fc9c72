"""Test-time augmentation: average a model's probabilities over the 8 symmetries of the square.

Histology and cytology patches have no preferred orientation, so a patch rotated by 90° or
mirrored is the same tissue; averaging the probabilities of the 8 views (4 rotations × mirror)
removes the orientation noise of a single forward pass. Dense outputs (segmentation) are mapped
back to the original orientation before averaging; channels that hold a displacement field (the
horizontal and vertical maps of a hover head) are turned back as vectors too: a left-right mirror
negates the horizontal component, a quarter turn swaps the two components and negates one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["DIHEDRAL", "FLIPS", "dihedral_mean"]

# (quarter turns, mirror left-right first)
DIHEDRAL: tuple[tuple[int, bool], ...] = tuple((k, f) for f in (False, True) for k in range(4))
# the 4 flips (none, left-right, up-down = mirror + half turn, both = half turn): shape-preserving, for tiles
FLIPS: tuple[tuple[int, bool], ...] = ((0, False), (0, True), (2, True), (2, False))


def _view(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    x = x.flip(-1) if flip else x
    return torch.rot90(x, k, dims=(-2, -1)) if k else x


def _unview(y: torch.Tensor, k: int, flip: bool, vectors: tuple[int, int] | None = None) -> torch.Tensor:
    """Undo :func:`_view` on a dense output; ``vectors`` = ``(horizontal, vertical)`` channels of a
    displacement field, whose values are turned back as well as their positions."""
    y = torch.rot90(y, -k, dims=(-2, -1)) if k else y
    y = y.flip(-1) if flip else y
    if vectors is None or (not k and not flip):
        return y
    ih, iv = vectors
    h, v = y[:, ih], y[:, iv]
    for _ in range(k % 4):  # a quarter turn moved (row, col) offsets to (-col, row): undo it
        h, v = -v, h
    if flip:
        h = -h
    y = y.clone()
    y[:, ih], y[:, iv] = h, v
    return y


def dihedral_mean(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, dense: bool = False,
                  views: int | str = 8, vectors: tuple[int, int] | None = None) -> torch.Tensor:
    """Mean of ``fn`` (probabilities of a ``B×C×H×W`` batch) over the first ``views`` symmetries.

    Args:
        fn: batch → probabilities (``B×K`` for classification, ``B×K×H×W`` when ``dense``).
        x: the input batch.
        dense: outputs are images: each view's output is turned back before averaging.
        views: 1 (no augmentation), 2, 4 (rotations), 8 (rotations and mirror images) or
            ``"flips"`` (:data:`FLIPS`, keeps non-square shapes).
        vectors: dense only: the ``(horizontal, vertical)`` output channels of a displacement
            field (:func:`medattn.models.outputs.displacement_channels`), turned back as vectors.
    """
    if views == "flips":
        chosen = FLIPS
    elif views in (1, 2, 4, 8):
        chosen = DIHEDRAL[: int(views)] if views != 2 else (DIHEDRAL[0], DIHEDRAL[4])
    else:
        raise ValueError(f"views must be 1, 2, 4, 8 or 'flips', got {views}")
    total = None
    for k, flip in chosen:
        y = fn(_view(x, k, flip))
        if dense:
            y = _unview(y, k, flip, vectors)
        total = y if total is None else total + y
    assert total is not None
    return total / len(chosen)
