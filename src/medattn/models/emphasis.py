"""Emphasise segmented regions before classification: mask out, dim, or crop to the region.

Everything works on batches of ``[0, 1]`` float images (``B×C×H×W``) with boolean region masks
(``B×H×W``) at the same resolution, so the same code runs inside a served model and in the
Python API.

- ``mask``: background pixels are replaced by ``fill`` (0 = black).
- ``dim``: background pixels keep ``dim`` of their contrast towards ``fill``
  (``fill + dim·(x − fill)``), so context stays visible but faint.
- ``crop``: the bounding box of the largest connected region (plus a ``margin`` fraction on each
  side) is cut out of the *unmasked* image and resized to the classifier's input.

An empty mask leaves the image whole in every mode (the classifier then sees what it would see
alone), so a segmenter miss never produces a black or empty input.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from medattn.errors import ConfigError

__all__ = ["EMPHASIS_MODES", "Mode", "check_mode", "region_mask", "region_boxes", "emphasise", "resize"]

EMPHASIS_MODES = ("mask", "dim", "crop")
Mode = Literal["mask", "dim", "crop"]


def check_mode(mode: str, dim: float = 0.3, margin: float = 0.05) -> str:
    """Validate an emphasis mode and its parameters; returns the mode."""
    if mode not in EMPHASIS_MODES:
        raise ConfigError(f"--mode '{mode}' is not an emphasis mode; use one of {', '.join(EMPHASIS_MODES)}")
    if not 0.0 <= dim <= 1.0:
        raise ConfigError(f"--dim must lie in [0, 1] (share of background contrast kept), got {dim}")
    if not 0.0 <= margin <= 1.0:
        raise ConfigError(f"--margin must lie in [0, 1] (fraction of the box added on each side), got {margin}")
    return mode


def resize(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased resize of ``B×C×H×W`` to ``hw`` (no-op when already that size)."""
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    return F.interpolate(x, size=tuple(hw), mode="bilinear", align_corners=False, antialias=True)


def region_mask(seg_out: torch.Tensor, hw: tuple[int, int], threshold: float = 0.5,
                seg_target: str = "binary") -> torch.Tensor:
    """Foreground of segmentation logits (``B×K×h×w``) at size ``hw`` → boolean ``B×H×W``.

    One output channel, or a ``hover`` head's nuclear-pixel channel 0: ``sigmoid ≥ threshold``;
    several: arg-max class ``> 0`` (every class but background, e.g. nucleus interior and
    boundary of a three-class head).
    """
    if seg_out.shape[1] == 1 or seg_target == "hover":
        from medattn.models.outputs import probabilities

        fg = probabilities(seg_out[:, :1], "segmentation")[:, 0] >= threshold
    else:
        fg = seg_out.argmax(1) > 0
    if tuple(fg.shape[-2:]) != tuple(hw):
        fg = F.interpolate(fg[:, None].float(), size=tuple(hw), mode="nearest")[:, 0] > 0.5
    return fg


def region_boxes(mask: torch.Tensor, margin: float = 0.05) -> torch.Tensor:
    """Box ``(x0, y0, x1, y1)`` (pixels, end exclusive) of the largest connected region of each mask.

    The box grows by ``margin`` × its size on every side (clipped to the image). An empty mask gives
    the whole image.
    """
    from scipy import ndimage

    b, h, w = mask.shape
    out = torch.zeros((b, 4), dtype=torch.long)
    for i, m in enumerate(mask.detach().cpu().numpy()):
        lab, n = ndimage.label(m)
        if n == 0:
            out[i] = torch.tensor([0, 0, w, h])
            continue
        sizes = np.bincount(lab.ravel(), minlength=n + 1)
        sizes[0] = 0
        ys, xs = np.nonzero(lab == int(sizes.argmax()))
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        dy, dx = round(margin * (y1 - y0)), round(margin * (x1 - x0))
        out[i] = torch.tensor([max(0, x0 - dx), max(0, y0 - dy), min(w, x1 + dx), min(h, y1 + dy)])
    return out


def emphasise(x: torch.Tensor, mask: torch.Tensor, mode: str, out_hw: tuple[int, int], *,
              dim: float = 0.3, fill: float = 0.0, boxes: torch.Tensor | None = None,
              margin: float = 0.05) -> torch.Tensor:
    """Emphasise the masked regions of ``x`` (``B×C×H×W`` in [0, 1]) and resize to ``out_hw``.

    Args:
        x: images in [0, 1].
        mask: boolean ``B×H×W`` region masks at the images' resolution.
        mode: ``mask``, ``dim`` or ``crop`` (see the module docstring).
        out_hw: the classifier's input ``(H, W)``.
        dim: ``dim`` mode: share of the background's contrast kept.
        fill: value the background is masked or dimmed towards.
        boxes: ``crop`` mode: precomputed :func:`region_boxes` (computed when ``None``).
        margin: ``crop`` mode: margin of the boxes computed here.
    """
    check_mode(mode, dim, margin)
    m = mask[:, None].to(x.dtype)
    empty = (mask.flatten(1).sum(1) == 0).view(-1, 1, 1, 1)
    if mode == "mask":
        out = torch.where(empty, x, x * m + fill * (1 - m))
    elif mode == "dim":
        out = torch.where(empty, x, x * m + (fill + dim * (x - fill)) * (1 - m))
    else:
        bx = region_boxes(mask, margin) if boxes is None else boxes
        crops = [resize(x[i : i + 1, :, int(y0):int(y1), int(x0):int(x1)], out_hw)
                 for i, (x0, y0, x1, y1) in enumerate(bx.tolist())]
        return torch.cat(crops) if crops else x[:0]
    return resize(out, out_hw)
