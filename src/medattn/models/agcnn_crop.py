"""AG-CNN attention-guided cropping (Guan et al. 2018), batched and on the model's device.

heatmap = max over channels of |features| → resized to the mask grid → min-max normalised per
image → mask = heatmap > τ (or Otsu) → largest 8-connected component → bounding box → the box is
cropped from the *input* image and resized as RoIAlign does. An empty mask (e.g. a constant
heatmap) falls back to the whole image.

Everything is tensor operations with static shapes (no SciPy, no data-dependent Python control
flow), so the whole AG-CNN traces to ONNX: the connected components come from a fixed number of
label-propagation rounds (:func:`component_labels`), the crop from two matrix products.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from medattn.errors import ModelError

__all__ = [
    "attention_heatmap",
    "otsu_threshold",
    "component_labels",
    "label_rounds",
    "largest_component",
    "mask_boxes",
    "attention_boxes",
    "check_threshold",
    "crop_boxes",
]


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


def label_rounds(h: int, w: int) -> int:
    """Propagation rounds run by :func:`component_labels` on an ``h×w`` grid: ``2·⌈log2(h·w)⌉ + 4``.

    Hooking plus pointer jumping merges components in about ``log2`` rounds (8 rounds for a
    224×224 serpentine, the worst shape measured), so the bound leaves a wide margin.
    """
    return 2 * math.ceil(math.log2(max(h * w, 2))) + 4


def _exporting() -> bool:
    return bool(torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting())


def component_labels(mask: torch.Tensor, rounds: int | None = None, exact: bool | None = None) -> torch.Tensor:
    """8-connected component labels of ``B×H×W`` boolean masks, in torch only.

    Every foreground pixel starts as its own parent (its raster index + 1; background is 0). Each
    round (1) *hooks*: the parent of every pixel takes the largest parent among the pixel's 8
    neighbours (a 3×3 max-pool plus a scatter-max), and (2) *jumps* twice: each pixel takes its
    parent's parent. Labels never leave a component and only grow, so at the fixed point all pixels
    of a component share one label (the index of one of its pixels) and components differ.

    Args:
        mask: ``B×H×W`` boolean.
        rounds: rounds to run (default :func:`label_rounds`).
        exact: after ``rounds``, go on until nothing changes, so the labels are exact for any
            mask. Default: on in eager mode, off while tracing/exporting (the graph then runs
            exactly ``rounds``).

    Returns:
        ``B×H×W`` float labels (0 = background), exact integers.
    """
    b, h, w = mask.shape
    n = h * w
    m = mask.reshape(b, 1, h, w).to(torch.float32)
    idx = torch.arange(1, n + 1, device=mask.device, dtype=torch.float32).reshape(1, 1, h, w)
    parent = torch.cat([torch.zeros(b, 1, device=mask.device), (idx * m).reshape(b, n)], 1)

    def step(p: torch.Tensor) -> torch.Tensor:
        nb = F.max_pool2d(p[:, 1:].reshape(b, 1, h, w), 3, stride=1, padding=1) * m
        p = p.scatter_reduce(1, p[:, 1:].long(), nb.reshape(b, n), "amax", include_self=True)
        p = torch.gather(p, 1, p.long())
        return torch.gather(p, 1, p.long())

    for _ in range(rounds or label_rounds(h, w)):
        parent = step(parent)
    if exact if exact is not None else not _exporting():  # finish pathological masks exactly
        while True:
            nxt = step(parent)
            if torch.equal(nxt, parent):
                break
            parent = nxt
    return parent[:, 1:].reshape(b, h, w)


def largest_component(mask: torch.Tensor, rounds: int | None = None, exact: bool | None = None) -> torch.Tensor:
    """Largest 8-connected component of each ``B×H×W`` boolean mask (empty stays empty).

    Ties keep the component met first in raster order (as ``scipy.ndimage.label`` numbers them).
    Pure torch (:func:`component_labels`, which ``rounds`` and ``exact`` are passed to), on the
    mask's device.
    """
    b, h, w = mask.shape
    n = h * w
    fg = mask.reshape(b, n).bool()
    lab = component_labels(mask, rounds, exact).reshape(b, n).long()
    sizes = torch.zeros(b, n + 1, dtype=torch.long, device=mask.device)
    sizes = sizes.scatter_add(1, lab, fg.long())
    size_at = torch.gather(sizes, 1, lab)
    # largest size first, then the smallest raster index (the component met first)
    order = torch.arange(n, 0, -1, device=mask.device, dtype=torch.long)[None]
    score = torch.where(fg, size_at * (n + 1) + order, torch.full_like(size_at, -1))
    chosen = torch.gather(lab, 1, score.argmax(1, keepdim=True))
    return ((lab == chosen) & fg).reshape(b, h, w)


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


def _axis_weights(lo: torch.Tensor, hi: torch.Tensor, n_out: int, n_in: int) -> torch.Tensor:
    """``B×n_out×n_in`` RoIAlign weights along one axis (``aligned=True``, adaptive sampling).

    Output pixel ``i`` averages ``s = ⌈(hi − lo)/n_out⌉`` bilinear samples at
    ``lo − 0.5 + (i + (k + 0.5)/s)·(hi − lo)/n_out``; samples beyond one pixel outside the image
    count as zero, the others are clamped to the border. ``s`` varies per box but never exceeds
    ``⌈n_in/n_out⌉``, so unused sample slots are masked instead of changing the shapes.
    """
    s_max = max(1, math.ceil(n_in / n_out))
    span = (hi - lo)[:, None, None]
    s = torch.ceil(span / n_out).clamp(1, s_max)
    k = torch.arange(s_max, device=lo.device, dtype=lo.dtype)[None, None, :]
    i = torch.arange(n_out, device=lo.device, dtype=lo.dtype)[None, :, None]
    pos = lo[:, None, None] - 0.5 + (i + (k + 0.5) / s) * (span / n_out)  # B×n_out×s_max
    valid = (k < s) & (pos >= -1.0) & (pos <= float(n_in))
    r = torch.arange(n_in, device=lo.device, dtype=lo.dtype)
    hat = (1.0 - (pos.clamp(0.0, n_in - 1.0)[..., None] - r).abs()).clamp_min(0.0)  # B×n_out×s_max×n_in
    return (hat * valid[..., None].to(lo.dtype)).sum(2) / s


def crop_boxes(images: torch.Tensor, boxes: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Crop ``B`` boxes (one per image, input-pixel ``x1, y1, x2, y2``) and resize them to ``size``.

    The same values as ``torchvision.ops.roi_align(aligned=True, sampling_ratio=-1)``, computed as
    two matrix products with per-box interpolation weights (:func:`_axis_weights`): static shapes,
    so the crop exports to ONNX.
    """
    oh, ow = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    h, w = images.shape[-2:]
    bx = boxes.to(images.dtype)
    wy = _axis_weights(bx[:, 1], bx[:, 3], oh, h)  # B×OH×H
    wx = _axis_weights(bx[:, 0], bx[:, 2], ow, w)  # B×OW×W
    return wy[:, None] @ images @ wx[:, None].transpose(-1, -2)
