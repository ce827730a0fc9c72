"""Pictures a person reads: a probability heatmap over the image (colour bar with the decision
threshold labelled, scale bar in µm when the scale is known) and instance contours over the image.

Used by ``medattn slide`` (overlay.png, cam.png) and ``medattn predict`` (tiled classification
heatmaps, segmentation overlays). Drawn with Pillow: fast, no figure machinery.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medattn.io import atomic_path

__all__ = ["write_overlay", "write_instance_overlay", "scale_bar_um"]

_NICE_UM = (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000)


def scale_bar_um(um_per_px: float, width_px: int) -> tuple[float, int]:
    """A round length (µm) whose bar is at most a fifth of ``width_px``, and its length in pixels."""
    target = width_px / 5 * um_per_px
    um = max([v for v in _NICE_UM if v <= target] or [_NICE_UM[0]])
    return float(um), max(1, int(round(um / um_per_px)))


def _draw_scale_bar(draw: object, x: int, y: int, um_per_px: float, width_px: int) -> None:
    um, px = scale_bar_um(um_per_px, width_px)
    label = f"{um / 1000:g} mm" if um >= 1000 else f"{um:g} µm"
    draw.rectangle([x - 3, y - 14, x + px + 3, y + 7], fill="white")  # type: ignore[attr-defined]
    draw.line([(x, y), (x + px, y)], fill="black", width=4)  # type: ignore[attr-defined]
    draw.text((x, y - 14), label, fill="black")  # type: ignore[attr-defined]


def _fit(image: np.ndarray, max_px: int) -> tuple[object, float]:
    from PIL import Image

    a = np.asarray(image)
    a = np.repeat(a[..., None], 3, 2) if a.ndim == 2 else a[..., :3]
    h, w = a.shape[:2]
    k = min(max_px / max(h, w), max(1.0, 400 / max(h, w)))  # small images are enlarged to stay readable
    W, H = max(1, int(round(w * k))), max(1, int(round(h * k)))
    im = Image.fromarray(np.ascontiguousarray(a)).convert("RGB")
    return im.resize((W, H), Image.Resampling.BILINEAR if k < 1 else Image.Resampling.NEAREST), k


def write_overlay(path: Path, thumb: np.ndarray, grid: np.ndarray, extent: tuple[float, float, float, float],
                  threshold: float, title: str, max_px: int = 1200, um_per_px: float | None = None,
                  label: str = "probability") -> None:
    """PNG of ``thumb`` with the heatmap ``grid`` over ``extent`` (``x0, x1, y1, y0`` in thumbnail
    pixels; transparent where NaN), a colour bar with the decision threshold marked and labelled, a
    title, and a scale bar when ``um_per_px`` (of the thumbnail) is known."""
    from matplotlib import colormaps
    from PIL import Image, ImageDraw

    base, k = _fit(thumb, max_px)
    W, H = base.size  # type: ignore[attr-defined]
    x0, x1, y1, y0 = (v * k for v in extent)
    gw, gh = max(1, int(round(x1 - x0))), max(1, int(round(y1 - y0)))
    rgba = (colormaps["inferno"](np.nan_to_num(np.clip(grid, 0, 1), nan=0.0)) * 255).astype(np.uint8)
    rgba[..., 3] = np.where(np.isfinite(grid), 150, 0)
    heat = Image.fromarray(rgba, "RGBA").resize((gw, gh), Image.Resampling.NEAREST)
    base.paste(heat, (int(round(x0)), int(round(y0))), heat)  # type: ignore[attr-defined]
    bar_w, pad, top = 18, 120, 22
    canvas = Image.new("RGB", (W + bar_w + pad + 10, max(H + top + 22, 170)), "white")
    canvas.paste(base, (0, top))
    d = ImageDraw.Draw(canvas)
    d.text((4, 4), title, fill="black")
    bx = W + 20
    lut = (colormaps["inferno"](np.linspace(1, 0, max(H, 2)))[:, :3] * 255).astype(np.uint8)
    canvas.paste(Image.fromarray(np.repeat(lut[:, None, :], bar_w, 1)), (bx, top))
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = top + int((1 - v) * (H - 1))
        d.line([(bx + bar_w, y), (bx + bar_w + 4, y)], fill="black")
        d.text((bx + bar_w + 6, max(top, y - 6)), f"{v:.2f}", fill="black")
    ty = top + int((1 - float(np.clip(threshold, 0, 1))) * (H - 1))
    d.line([(bx - 3, ty), (bx + bar_w + 3, ty)], fill=(0, 200, 255), width=2)
    d.text((bx + bar_w + 36, max(top, ty - 6)), f"threshold {threshold:.2f}", fill=(0, 120, 200))
    d.text((bx - 2, top + H + 6), label, fill="black")
    if um_per_px:
        _draw_scale_bar(d, 10, top + H - 12, um_per_px / k, W)
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")


def write_instance_overlay(path: Path, image: np.ndarray, labels: np.ndarray, title: str, *,
                           um_per_px: float | None = None, max_px: int = 1200) -> None:
    """PNG of ``image`` with each instance's contour drawn (one colour per object), a title with
    the object count, and a scale bar when ``um_per_px`` is known."""
    from PIL import Image, ImageDraw
    from skimage.segmentation import find_boundaries

    a = np.asarray(image)
    a = np.repeat(a[..., None], 3, 2) if a.ndim == 2 else a[..., :3].copy()
    edge = find_boundaries(labels, mode="thick") & (labels > 0)
    palette = np.array([[0, 255, 0], [255, 255, 0], [0, 255, 255], [255, 128, 0], [255, 0, 255]], np.uint8)
    colours = palette[np.arange(int(labels.max()) + 1) % len(palette)]  # bright on H&E, neighbours differ
    a[edge] = colours[labels[edge]]
    base, k = _fit(a, max_px)
    W, H = base.size  # type: ignore[attr-defined]
    top = 22
    canvas = Image.new("RGB", (W, H + top), "white")
    canvas.paste(base, (0, top))
    d = ImageDraw.Draw(canvas)
    n = int(len(np.unique(labels[labels > 0])))
    d.text((4, 4), f"{title}: {n} objects (contours)", fill="black")
    if um_per_px:
        _draw_scale_bar(d, 10, top + H - 12, um_per_px / k, W)
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
