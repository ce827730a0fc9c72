"""AG-CNN attention-guided cropping (Guan et al. 2018), batched and on the model's device.

heatmap = max over channels of |features| → resized to the mask grid → min-max normalised per
image → mask = heatmap > τ (or Otsu) → largest 8-connected component → bounding box → the box is
cropped from the *input* image and resized with ``torchvision.ops.roi_align``. An empty mask
(e.g. a constant heatmap) falls back to the whole image.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torchvision.ops import roi_align

from medattn.errors import ModelError

__all__ = [
    "attention_heatmap",
    "otsu_threshold",
    "largest_component",
    "mask_boxes",
    "attention_boxes",
    "check_threshold",
    "crop_boxes",
]

_EIGHT = np.ones((3, 3), dtype=bool)


def attention_heatmap(features: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """``B×H×W`` heatmap in [0, 1]: max over channels of ``|features|``, resized, min-max normalised.

    A constant map (up to float rounding) normalises to all zeros, so no pixel passes a threshold.
    """
    heat = features.detach().abs().max(dim=1, keepdim=True)[0].float()
    if size is not None and tuple(heat.shape[-2:]) != tuple(size):
        heat = F.interpolate(heat, size=size, mode="bilinear", align_corners=False)
    heat = heat[:, 0]
    flat = heat.flatten(1)
    lo = flat.min(1)[0][:, None, None]
    hi = flat.max(1)[0][:, None, None]
    span = hi - lo
    flat_map = span <= 1e-5 * torch.maximum(hi.abs(), lo.abs()).clamp_min(1e-12)  # rounding noise only
    return torch.where(flat_map, torch.zeros_like(heat), (heat - lo) / span.clamp_min(1e-12))


def otsu_threshold(heat: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """Per-image Otsu threshold (``B``) of ``B×H×W`` values in [0, 1] (histogram over [0, 1])."""
    b = heat.shape[0]
    idx = (heat.flatten(1) * bins).long().clamp_(0, bins - 1)
    hist = torch.zeros(b, bins, device=heat.device, dtype=torch.float64)
    hist.scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float64))
    centers = (torch.arange(bins, device=heat.device, dtype=torch.float64) + 0.5) / bins
    w1 = hist.cumsum(1)
    w2 = hist.flip(1).cumsum(1).flip(1)
    m1 = (hist * centers).cumsum(1) / w1.clamp_min(1e-12)
    m2 = (hist * centers).flip(1).cumsum(1).flip(1) / w2.clamp_min(1e-12)
    between = w1[:, :-1] * w2[:, 1:] * (m1[:, :-1] - m2[:, 1:]) ** 2
    return centers[between.argmax(1)].to(heat.dtype)


def largest_component(mask: torch.Tensor) -> torch.Tensor:
    """Largest 8-connected component of each ``B×H×W`` boolean mask (empty stays empty).

    Labelling runs in ``scipy.ndimage.label`` on a CPU copy of the boolean mask (a few hundred
    microseconds per 224² mask); the result comes back on the mask's device. Ties keep the
    component met first in raster order.
    """
    arr = mask.detach().bool().cpu().numpy()
    out = np.zeros_like(arr)
    for i, m in enumerate(arr):
        lab, n = ndimage.label(m, structure=_EIGHT)
        if n:
            sizes = np.bincount(lab.ravel())
            sizes[0] = 0
            out[i] = lab == sizes.argmax()
    return torch.from_numpy(out).to(mask.device)


def mask_boxes(mask: torch.Tensor) -> torch.Tensor:
    """``B×4`` boxes ``(x1, y1, x2, y2)`` (exclusive end, mask-pixel units); empty → whole mask."""
    b, h, w = mask.shape
    rows, cols = mask.any(2), mask.any(1)
    ar_h = torch.arange(h, device=mask.device)
    ar_w = torch.arange(w, device=mask.device)
    y1 = torch.where(rows, ar_h, h).min(1)[0]
    y2 = torch.where(rows, ar_h + 1, 0).max(1)[0]
    x1 = torch.where(cols, ar_w, w).min(1)[0]
    x2 = torch.where(cols, ar_w + 1, 0).max(1)[0]
    empty = ~rows.any(1)
    full = torch.tensor([0, 0, w, h], device=mask.device)
    boxes = torch.stack([x1, y1, x2, y2], 1)
    return torch.where(empty[:, None], full, boxes).to(torch.float32)


def check_threshold(threshold: float | str) -> None:
    """Raise :class:`ModelError` unless ``threshold`` is in (0, 1) or ``"otsu"``."""
    ok = threshold.lower() == "otsu" if isinstance(threshold, str) else 0.0 < float(threshold) < 1.0
    if not ok:
        raise ModelError(f"threshold must be a number in (0, 1) or 'otsu', got {threshold!r}")


def attention_boxes(
    features: torch.Tensor,
    image_size: tuple[int, int],
    threshold: float | str = 0.7,
    mask_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """AG-CNN boxes (``B×4`` float, input-pixel ``x1, y1, x2, y2``) from last-layer features.

    Args:
        features: ``B×C×h×w`` feature map of the global branch.
        image_size: ``(H, W)`` of the input image.
        threshold: τ in (0, 1) or ``"otsu"``.
        mask_size: grid on which the mask is thresholded (default: the input size, as in the paper).
    """
    check_threshold(threshold)
    grid = tuple(mask_size) if mask_size is not None else tuple(image_size)
    heat = attention_heatmap(features, grid)
    thr = otsu_threshold(heat)[:, None, None] if isinstance(threshold, str) else float(threshold)
    boxes = mask_boxes(largest_component(heat > thr))
    sy, sx = image_size[0] / grid[0], image_size[1] / grid[1]
    return boxes * torch.tensor([sx, sy, sx, sy], device=boxes.device)


def crop_boxes(images: torch.Tensor, boxes: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Crop ``B`` boxes (one per image, input-pixel ``x1, y1, x2, y2``) and resize them to ``size``."""
    out = (size, size) if isinstance(size, int) else tuple(size)
    idx = torch.arange(images.shape[0], device=images.device, dtype=images.dtype)[:, None]
    rois = torch.cat([idx, boxes.to(images.dtype)], 1)
    return roi_align(images, rois, output_size=out, spatial_scale=1.0, sampling_ratio=-1, aligned=True)
