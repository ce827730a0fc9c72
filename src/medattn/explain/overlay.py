"""Heatmaps blended on images (consistent ``jet`` colour map)."""

from __future__ import annotations

import numpy as np

__all__ = ["overlay", "CMAP"]

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
