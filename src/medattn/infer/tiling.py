"""The one tiled-inference core: images of any size seen window by window.

A model trained on ``window``-sized crops sees large images (a 1000×1000 MoNuSeg field, a slide
region, a whole tissue photograph given to a patch classifier) tile by tile. Two outputs:

* dense (segmentation): windows overlap by ``overlap`` pixels and each pixel's probabilities are
  the mean over the windows (and flips) that cover it, so tile borders leave no seams
  (:func:`tiled_dense_probs`, :func:`sliding_window_probs`);
* per tile (classification): one probability vector per window (:func:`tiled_patch_probs`).

Images smaller than a window are padded by reflection and cropped back. Evaluation, ``medattn
predict``, ``medattn slide`` and the server all run models through these functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medattn.errors import ConfigError
from medattn.infer.tta import dihedral_mean

__all__ = [
    "ProbsFn", "effective_overlap", "tile_starts", "tile_boxes", "pad_to_window", "iter_tile_batches", "model_probs_fn",
    "class_probs", "tiled_dense_probs", "sliding_window_probs", "image_tiles", "aggregate_tiles", "tile_grid",
]

ProbsFn = Callable[[torch.Tensor], "torch.Tensor | np.ndarray"]
"""A normalised ``B×C×h×w`` batch → probabilities (``B``, ``B×K`` or ``B×K×h×w``)."""


def effective_overlap(window: int, overlap: int) -> int:
    """The overlap actually used: at most half a window (more only repeats work: every pixel is
    already seen by two windows per axis)."""
    return max(0, min(int(overlap), int(window) // 2))


def tile_starts(length: int, window: int, overlap: int) -> list[int]:
    """Window start offsets covering ``[0, length)`` with at least ``overlap`` pixels shared."""
    if window < 1 or not 0 <= overlap < window:
        raise ConfigError(f"tile size must be >= 1 and 0 <= overlap < tile size, got {window} / {overlap}")
    if length <= window:
        return [0]
    step = window - overlap
    starts = list(range(0, length - window + 1, step))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def tile_boxes(height: int, width: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """``(y0, x0)`` of every window over an ``height × width`` image, row by row."""
    return [(y0, x0) for y0 in tile_starts(height, window, overlap) for x0 in tile_starts(width, window, overlap)]


def pad_to_window(image: torch.Tensor, window: int) -> torch.Tensor:
    """``C×H×W`` padded at the bottom/right (reflection, or replication when too small) to ``window``."""
    _, h, w = image.shape
    ph, pw = max(window - h, 0), max(window - w, 0)
    x = image.float()
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x[None], (0, pw, 0, ph), mode=mode)[0]
    return x


def iter_tile_batches(image: torch.Tensor, boxes: list[tuple[int, int]], window: int,
                      batch_size: int) -> Iterator[tuple[list[tuple[int, int]], torch.Tensor]]:
    """``(boxes, B×C×window×window batch)`` chunks of ``image`` (already padded to ``window``)."""
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    for i in range(0, len(boxes), batch_size):
        chunk = boxes[i:i + batch_size]
        yield chunk, torch.stack([image[:, y0:y0 + window, x0:x0 + window] for y0, x0 in chunk])


def class_probs(p: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Dense probabilities ``B×K×H×W`` as classes: a 1-channel (sigmoid) map becomes ``[1 − p, p]``."""
    t = torch.as_tensor(p).float()
    return torch.cat([1 - t, t], 1) if t.ndim == 4 and t.shape[1] == 1 else t


def model_probs_fn(model: nn.Module, *, dense: bool = True, views: int | str = 1,
                   seg_target: str = "binary") -> ProbsFn:
    """Probabilities of a bare segmentation model (:func:`medattn.models.outputs.probabilities`)
    with test-time augmentation.

    Args:
        model: returns logits ``B×K×h×w`` (dense) or ``B×K``.
        dense: segmentation output (TTA views are turned back before averaging).
        views: TTA views of :func:`medattn.infer.tta.dihedral_mean` (1 = none, ``"flips"``, 8).
        seg_target: the head kind (``binary``, ``three_class``, ``hover``), as the recipe says.
    """
    from medattn.models.outputs import displacement_channels, probabilities

    model.eval()
    dev = next(model.parameters()).device
    vectors = displacement_channels("segmentation", seg_target) if dense else None

    @torch.no_grad()
    def fn(x: torch.Tensor) -> torch.Tensor:
        return dihedral_mean(lambda v: probabilities(model(v), "segmentation", seg_target), x.to(dev), dense=dense,
                             views=views, vectors=vectors).cpu()

    return fn


@torch.no_grad()
def tiled_dense_probs(probs_fn: ProbsFn, image: torch.Tensor, window: int, overlap: int,
                      batch_size: int = 4) -> np.ndarray:
    """Class probabilities ``K×H×W`` (``float32``) of one normalised ``C×H×W`` image.

    Each pixel is the mean of the windows covering it; a 1-channel output becomes 2 classes.
    """
    if image.ndim != 3:
        raise ConfigError(f"tiled inference takes one C×H×W image, got shape {tuple(image.shape)}")
    _, h, w = image.shape
    x = pad_to_window(image, window)
    hh, ww = x.shape[1:]
    acc: torch.Tensor | None = None
    cnt = torch.zeros(1, hh, ww)
    for chunk, tiles in iter_tile_batches(x, tile_boxes(hh, ww, window, overlap), window, batch_size):
        p = class_probs(probs_fn(tiles)).cpu()
        if acc is None:
            acc = torch.zeros(p.shape[1], hh, ww)
        for (y0, x0), pk in zip(chunk, p, strict=True):
            acc[:, y0:y0 + window, x0:x0 + window] += pk
            cnt[:, y0:y0 + window, x0:x0 + window] += 1
    assert acc is not None
    return (acc / cnt)[:, :h, :w].numpy()


def image_tiles(image: np.ndarray, window: int) -> tuple[list[tuple[int, int]], list[np.ndarray]]:
    """Non-overlapping ``window``-pixel tiles of a decoded image at its own scale, row by row.

    The last row and column are shifted inwards to end at the image's edge (they overlap their
    neighbours; no pixel is left out, none is invented); a side shorter than ``window`` is padded
    by reflection (replication when too short to reflect). Each tile is later prepared on its own,
    exactly as a slide region of the same size.

    Returns:
        ``(boxes, tiles)``: tile origins ``(y0, x0)`` and ``uint8`` tiles ``window×window[×C]``.
    """
    a = np.asarray(image)
    h, w = a.shape[:2]
    ph, pw = max(window - h, 0), max(window - w, 0)
    if ph or pw:
        pad = [(0, ph), (0, pw)] + [(0, 0)] * (a.ndim - 2)
        a = np.pad(a, pad, mode="reflect" if ph < h and pw < w else "edge")
    boxes = tile_boxes(a.shape[0], a.shape[1], window, 0)
    return boxes, [np.ascontiguousarray(a[y0:y0 + window, x0:x0 + window]) for y0, x0 in boxes]


def aggregate_tiles(task: str, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image-level probabilities from per-tile ones, and the per-tile score of a heatmap.

    Binary and multi-label: the maximum over tiles (an image is positive when any part is);
    multi-class: the mean over tiles. The score is P(positive) (binary), 1 − P(first class)
    (multi-class) or the largest label probability (multi-label).
    """
    p = np.asarray(probs)
    if task == "multiclass":
        return p.mean(0), 1 - p[:, 0]
    return p.max(0), (p if p.ndim == 1 else p.max(1))


def tile_grid(boxes: list[tuple[int, int]], score: np.ndarray) -> np.ndarray:
    """Per-tile scores as a ``rows × cols`` grid (boxes from :func:`image_tiles`)."""
    ys, xs = sorted({b[0] for b in boxes}), sorted({b[1] for b in boxes})
    grid = np.full((len(ys), len(xs)), np.nan, np.float32)
    yi, xi = {y: i for i, y in enumerate(ys)}, {x: i for i, x in enumerate(xs)}
    for (y0, x0), v in zip(boxes, np.asarray(score, np.float32), strict=True):
        grid[yi[y0], xi[x0]] = v
    return grid


def sliding_window_probs(model: nn.Module, image: torch.Tensor, window: int = 256, overlap: int = 64,
                         tta: bool = False, batch_size: int = 4, seg_target: str = "binary") -> np.ndarray:
    """Class probabilities ``K×H×W`` of a bare segmentation model over one ``C×H×W`` image.

    Args:
        model: returns ``B×K×h×w`` logits for ``B×C×h×w`` input (K = 1: sigmoid, else softmax;
            a ``hover`` head: see :func:`medattn.models.outputs.probabilities`).
        image: the normalised image (any device; moved to the model's).
        window: tile edge in pixels (the training crop size is a good choice).
        overlap: pixels shared by neighbouring tiles.
        tta: also predict the horizontally, vertically and doubly flipped tiles and average.
        batch_size: tiles per forward pass.
        seg_target: the head kind, as the recipe says.
    """
    fn = model_probs_fn(model, dense=True, views="flips" if tta else 1, seg_target=seg_target)
    return tiled_dense_probs(fn, image, window, overlap, batch_size)
