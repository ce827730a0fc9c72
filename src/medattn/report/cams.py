"""CAM thumbnails for report galleries: the heatmap over the image, the predicted probability
in the caption and, when a ground-truth mask exists, its outline."""

from __future__ import annotations

import io

import numpy as np

from medattn.report.plots import plt

__all__ = ["cam_thumbnail", "cam_caption"]


def cam_caption(prob: float | None = None, label: str = "", name: str = "") -> str:
    """``"tumour p=0.93 · patch_017"``-style caption (parts left out when unknown)."""
    parts = []
    if prob is not None and prob == prob:
        parts.append(f"{label} p={prob:.2f}".strip() if label else f"p={prob:.2f}")
    if name:
        parts.append(name)
    return " · ".join(parts)


def cam_thumbnail(image: np.ndarray, cam: np.ndarray, *, prob: float | None = None, label: str = "",
                  mask: np.ndarray | None = None, name: str = "", size_px: int = 160) -> bytes:
    """PNG bytes: ``image`` with ``cam`` blended in (jet, alpha 0.45), the mask outline in white
    when ``mask`` is given, and :func:`cam_caption` under the picture.

    Args:
        image: ``H×W`` or ``H×W×3`` (uint8, or float in [0, 1]).
        cam: ``h×w`` map in [0, 1]; resized to the image by the plot extent.
        prob: predicted probability of the explained class.
        label: that class's name.
        mask: ``H×W`` ground-truth mask (non-zero = lesion), outlined.
        name: item name for the caption.
        size_px: approximate width of the thumbnail in pixels.
    """
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = np.clip(img * (255.0 if img.max(initial=0) <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    h, w = img.shape[:2]
    dpi = 100
    fig = plt.figure(figsize=(size_px / dpi, size_px / dpi * (h / w) + 0.28), dpi=dpi)
    ax = fig.add_axes((0.0, 0.28 / (size_px / dpi * (h / w) + 0.28), 1.0, 1 - 0.28 / (size_px / dpi * (h / w) + 0.28)))
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, extent=(0, w, h, 0))
    ax.imshow(np.asarray(cam, dtype=np.float64), cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0, extent=(0, w, h, 0),
              interpolation="bilinear")
    if mask is not None and np.asarray(mask).any():
        m = (np.asarray(mask) != 0).astype(float)
        ax.contour(np.arange(m.shape[1]) + 0.5, np.arange(m.shape[0]) + 0.5, m, levels=[0.5], colors="white",
                   linewidths=1.2)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_axis_off()
    fig.text(0.5, 0.02, cam_caption(prob, label, name), ha="center", va="bottom", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()
