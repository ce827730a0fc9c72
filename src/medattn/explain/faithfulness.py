"""Where does the model look? Scores of a saliency map against a ground-truth mask."""

from __future__ import annotations

import numpy as np

__all__ = ["pointing_game", "energy_in_mask", "centre_gaussian_map", "random_map", "localisation_scores"]


def pointing_game(sal: np.ndarray, mask: np.ndarray) -> float:
    """1.0 if the map's maximum falls inside the mask, else 0.0 (ties: the first maximum)."""
    s = np.asarray(sal, dtype=np.float64)
    m = np.asarray(mask).astype(bool)
    if s.shape != m.shape:
        raise ValueError(f"map shape {s.shape} differs from mask shape {m.shape}")
    return float(m.reshape(-1)[int(np.argmax(s))])


def energy_in_mask(sal: np.ndarray, mask: np.ndarray) -> float:
    """Share of the (non-negative) map's total energy that lies inside the mask."""
    s = np.clip(np.asarray(sal, dtype=np.float64), 0, None)
    m = np.asarray(mask).astype(bool)
    if s.shape != m.shape:
        raise ValueError(f"map shape {s.shape} differs from mask shape {m.shape}")
    tot = s.sum()
    return float(s[m].sum() / tot) if tot > 0 else float(m.mean())


def centre_gaussian_map(h: int, w: int, sigma: float = 0.25) -> np.ndarray:
    """Baseline map: an isotropic Gaussian at the centre (``sigma`` as a fraction of size)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    return np.exp(-(((yy - cy) / (sigma * h)) ** 2 + ((xx - cx) / (sigma * w)) ** 2) / 2)


def random_map(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Baseline map: uniform noise."""
    return rng.random((h, w))


def localisation_scores(maps: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    """Mean pointing-game hit rate and energy-in-mask over items whose mask is not empty."""
    keep = [i for i in range(len(masks)) if np.asarray(masks[i]).any()]
    if not keep:
        return {"pointing_game": float("nan"), "energy_in_mask": float("nan"), "n": 0}
    pg = [pointing_game(maps[i], masks[i]) for i in keep]
    en = [energy_in_mask(maps[i], masks[i]) for i in keep]
    return {"pointing_game": float(np.mean(pg)), "energy_in_mask": float(np.mean(en)), "n": len(keep)}
