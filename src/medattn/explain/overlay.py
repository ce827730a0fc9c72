"""Heatmaps blended on images, with a colour bar, and per-class galleries (one ``jet`` colour map)."""

from __future__ import annotations

import numpy as np

__all__ = ["overlay", "overlay_figure", "gallery", "resize_map", "CMAP"]

CMAP = "jet"


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a [0, 1] ``heat`` map (H×W) onto an RGB ``uint8`` or [0, 1] image → ``uint8``."""
    import matplotlib

    img = np.asarray(image)
    img = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    h = np.asarray(heat, dtype=np.float32)
    if h.shape != img.shape[:2]:
        import torch
        import torch.nn.functional as F

        h = F.interpolate(torch.from_numpy(h)[None, None], size=img.shape[:2], mode="bilinear",
                          align_corners=False)[0, 0].numpy()
    rng = h.max() - h.min()
    h = (h - h.min()) / rng if rng > 0 else np.zeros_like(h)
    col = matplotlib.colormaps[CMAP](h)[..., :3].astype(np.float32)
    return (np.clip((1 - alpha) * img + alpha * col, 0, 1) * 255 + 0.5).astype(np.uint8)


def resize_map(heat: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an ``H×W`` map to ``shape`` (``(H, W)``)."""
    h = np.asarray(heat, dtype=np.float32)
    if h.shape == tuple(shape):
        return h
    import torch
    import torch.nn.functional as F

    return F.interpolate(torch.from_numpy(np.ascontiguousarray(h))[None, None], size=tuple(shape),
                         mode="bilinear", align_corners=False)[0, 0].numpy()


def _png_bytes(fig: object) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)  # type: ignore[attr-defined]
    return buf.getvalue()


def overlay_figure(image: np.ndarray, heat: np.ndarray, title: str = "", alpha: float = 0.45) -> bytes:
    """PNG bytes: the image, the heatmap blended on it, and a colour bar (``jet``, 0 = low, 1 = high).

    The heatmap is shown as computed (values in [0, 1]), so colours mean the same across images.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize

    img = np.asarray(image)
    heat = resize_map(heat, img.shape[:2])
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.2), gridspec_kw={"width_ratios": [1, 1.08]})
    try:
        axes[0].imshow(img, cmap="gray" if img.ndim == 2 else None)
        axes[0].set_title("input", fontsize=9)
        axes[1].imshow(img, cmap="gray" if img.ndim == 2 else None)
        im = axes[1].imshow(np.clip(heat, 0, 1), cmap=CMAP, norm=Normalize(0, 1), alpha=alpha)
        axes[1].set_title(title, fontsize=9)
        for a in axes:
            a.axis("off")
        fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.04).ax.tick_params(labelsize=7)
        fig.tight_layout()
        return _png_bytes(fig)
    finally:
        plt.close(fig)


def gallery(tiles: list[np.ndarray], titles: list[str], ncols: int = 6, title: str = "") -> bytes:
    """PNG bytes of a grid of ``uint8`` overlay tiles with short titles (a per-class gallery)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = max(1, len(tiles))
    cols = min(ncols, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.0 * rows + (0.3 if title else 0)), squeeze=False)
    try:
        for k, ax in enumerate(axes.reshape(-1)):
            ax.axis("off")
            if k < len(tiles):
                ax.imshow(tiles[k])
                ax.set_title(titles[k][:28], fontsize=7)
        if title:
            fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        return _png_bytes(fig)
    finally:
        plt.close(fig)
