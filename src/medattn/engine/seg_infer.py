"""Whole-image segmentation by overlapping tiles, with optional flip test-time augmentation.

A model trained on ``tile``-sized crops sees large images (a 1000×1000 MoNuSeg field, a slide
region) window by window: windows overlap by ``overlap`` pixels and each pixel's probabilities
are the mean over the windows (and flips) that cover it, so tile borders leave no seams. Images
smaller than a window are padded by reflection and cropped back.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medattn.engine.tta import dihedral_mean
from medattn.errors import ConfigError

__all__ = ["tile_starts", "sliding_window_probs"]

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


def _probs(logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities ``B×K×H×W``; a 1-channel head becomes ``[1 − p, p]``."""
    logits = logits.float()
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits)
        return torch.cat([1 - p, p], 1)
    return torch.softmax(logits, 1)


@torch.no_grad()
def sliding_window_probs(model: nn.Module, image: torch.Tensor, window: int = 256, overlap: int = 64,
                         tta: bool = False, batch_size: int = 4) -> np.ndarray:
    """Class probabilities ``K×H×W`` (``float32``) of one normalised ``C×H×W`` image.

    Args:
        model: returns ``B×K×h×w`` logits for ``B×C×h×w`` input (K = 1: sigmoid, else softmax).
        image: the normalised image (any device; moved to the model's).
        window: tile edge in pixels (the training crop size is a good choice).
        overlap: pixels shared by neighbouring tiles.
        tta: also predict the horizontally, vertically and doubly flipped tiles and average.
        batch_size: tiles per forward pass.
    """
    if image.ndim != 3:
        raise ConfigError(f"sliding_window_probs takes one C×H×W image, got shape {tuple(image.shape)}")
    model.eval()
    dev = next(model.parameters()).device
    _, h, w = image.shape
    ph, pw = max(window - h, 0), max(window - w, 0)
    x = image.float()
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x[None], (0, pw, 0, ph), mode=mode)[0]
    hh, ww = x.shape[1:]
    boxes = [(y0, x0) for y0 in tile_starts(hh, window, overlap) for x0 in tile_starts(ww, window, overlap)]
    acc: torch.Tensor | None = None
    cnt = torch.zeros(1, hh, ww)
    for i in range(0, len(boxes), batch_size):
        chunk = boxes[i:i + batch_size]
        tiles = torch.stack([x[:, y0:y0 + window, x0:x0 + window] for y0, x0 in chunk]).to(dev)
        p = dihedral_mean(lambda t: _probs(model(t)), tiles, dense=True, views="flips" if tta else 1).cpu()
        if acc is None:
            acc = torch.zeros(p.shape[1], hh, ww)
        for (y0, x0), pk in zip(chunk, p, strict=True):
            acc[:, y0:y0 + window, x0:x0 + window] += pk
            cnt[:, y0:y0 + window, x0:x0 + window] += 1
    assert acc is not None
    return (acc / cnt)[:, :h, :w].numpy()
