"""Small numpy painting helpers shared by the synthetic generators."""

from __future__ import annotations

import numpy as np

__all__ = ["smooth_noise", "paint_disk", "blob_mask", "blend"]


def smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int = 8) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a coarse random grid, bilinearly upsampled."""
    gh, gw = h // cell + 2, w // cell + 2
    grid = rng.random((gh, gw), dtype=np.float32)
    ys = np.linspace(0, gh - 1.001, h, dtype=np.float32)
    xs = np.linspace(0, gw - 1.001, w, dtype=np.float32)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    a = grid[y0][:, x0]
    b = grid[y0][:, x0 + 1]
    c = grid[y0 + 1][:, x0]
    d = grid[y0 + 1][:, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def blob_mask(
    h: int, w: int, cy: float, cx: float, ry: float, rx: float, angle: float,
    wobble: np.ndarray | None = None,
) -> np.ndarray:
    """Boolean ellipse (optionally with an irregular, wobbling border)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    ca, sa = np.cos(angle), np.sin(angle)
    u = (dx * ca + dy * sa) / max(rx, 1e-3)
    v = (-dx * sa + dy * ca) / max(ry, 1e-3)
    r = u * u + v * v
    if wobble is not None:
        theta = np.arctan2(v, u)
        k = np.arange(1, len(wobble) + 1, dtype=np.float32)
        rad = 1.0 + (wobble[None, None, :] * np.sin(k[None, None, :] * theta[..., None] + k)).sum(-1)
        r = r / np.maximum(rad, 0.3) ** 2
    return r <= 1.0


def paint_disk(
    alpha: np.ndarray, cy: float, cx: float, ry: float, rx: float, angle: float, value: float,
    wobble: np.ndarray | None = None,
) -> None:
    """Paint one (irregular) ellipse of height ``value`` into ``alpha`` (max-composited), touching
    only its bounding box."""
    h, w = alpha.shape
    r = int(np.ceil(max(ry, rx) * 1.6)) + 1
    y0, y1 = max(0, int(cy) - r), min(h, int(cy) + r + 1)
    x0, x1 = max(0, int(cx) - r), min(w, int(cx) + r + 1)
    if y0 >= y1 or x0 >= x1:
        return
    m = blob_mask(y1 - y0, x1 - x0, cy - y0, cx - x0, ry, rx, angle, wobble)
    sub = alpha[y0:y1, x0:x1]
    np.maximum(sub, np.where(m, value, 0.0).astype(alpha.dtype), out=sub)


def blend(base: np.ndarray, color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``base*(1-alpha) + color*alpha``; ``color`` is an RGB triple or an H×W×3 image."""
    a = alpha[..., None]
    col = color if color.ndim == 3 else color.reshape(1, 1, 3)
    return base * (1.0 - a) + col * a
