"""Where does the model look? Scores of a saliency map against ground truth and the model.

- Localisation: pointing game and energy-in-mask against a mask, or boxes (ChestX-ray14
  ``BBox_List_2017.csv``) rasterised with :func:`boxes_to_mask`; baselines
  :func:`random_map` and :func:`centre_gaussian_map`.
- Model-based: deletion/insertion AUC and ROAD (:mod:`medattn.explain.perturbation`), and the
  model-randomisation sanity check (:mod:`medattn.explain.sanity`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medattn.errors import DataError

__all__ = [
    "pointing_game",
    "energy_in_mask",
    "centre_gaussian_map",
    "random_map",
    "localisation_scores",
    "read_bbox_csv",
    "boxes_to_mask",
    "NIH_BOX_SPACE",
    "deletion_insertion",
    "road_scores",
    "randomisation_check",
    "randomise_weights",
]


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


# ---------------------------------------------------------------- boxes (ChestX-ray14 format)

NIH_BOX_SPACE = (1024, 1024)


def read_bbox_csv(path: str | Path) -> dict[str, list[tuple[str, float, float, float, float]]]:
    """Read boxes in the ChestX-ray14 ``BBox_List_2017.csv`` layout (``.csv`` or ``.csv.gz``).

    Columns: ``Image Index``, ``Finding Label``, then x, y, w, h (the official header names them
    ``Bbox [x,y,w,h]`` followed by three unnamed columns; ``x,y,w,h`` headers are accepted too).

    Returns:
        ``{image file name: [(finding, x, y, w, h), ...]}`` in the CSV's pixel space.

    Raises:
        DataError: missing or unreadable file, or missing columns (names the file and the layout).
    """
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise DataError(f"box file '{p}' not found; pass a CSV in the BBox_List_2017.csv layout")
    try:
        df = pd.read_csv(p)
    except Exception as exc:  # parser errors of many kinds
        raise DataError(f"cannot read box file '{p}': {str(exc)[:200]}") from None
    cols = list(df.columns)
    if len(cols) < 6 or "Image Index" not in cols or "Finding Label" not in cols:
        raise DataError(
            f"'{p}' has columns {cols[:8]}; expected 'Image Index', 'Finding Label', x, y, w, h "
            "(the ChestX-ray14 BBox_List_2017.csv layout)"
        )
    i_img, i_lab = cols.index("Image Index"), cols.index("Finding Label")
    coord_cols = [c for j, c in enumerate(cols) if j not in (i_img, i_lab)][:4]
    try:
        coords = df[coord_cols].astype(float).to_numpy()
    except ValueError:
        raise DataError(f"'{p}': box coordinates in columns {coord_cols} are not all numbers") from None
    out: dict[str, list[tuple[str, float, float, float, float]]] = {}
    for name, lab, (x, y, w, h) in zip(df["Image Index"].astype(str), df["Finding Label"].astype(str), coords,
                                       strict=True):
        out.setdefault(name, []).append((lab, float(x), float(y), float(w), float(h)))
    return out


def boxes_to_mask(
    boxes: list[tuple[float, float, float, float]] | np.ndarray,
    shape: tuple[int, int],
    source_size: tuple[int, int] | None = NIH_BOX_SPACE,
) -> np.ndarray:
    """Rasterise ``(x, y, w, h)`` boxes into an ``H×W`` boolean mask.

    Args:
        boxes: boxes in ``source_size`` pixel coordinates (x right, y down).
        shape: ``(H, W)`` of the map the mask must match.
        source_size: ``(width, height)`` of the space the boxes are given in (ChestX-ray14: the
            1024×1024 released images); ``None`` = already in ``shape``'s pixels.
    """
    h, w = shape
    sx = w / source_size[0] if source_size else 1.0
    sy = h / source_size[1] if source_size else 1.0
    m = np.zeros((h, w), bool)
    for x, y, bw, bh in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        x0, y0 = int(np.floor(x * sx)), int(np.floor(y * sy))
        x1, y1 = int(np.ceil((x + bw) * sx)), int(np.ceil((y + bh) * sy))
        m[max(0, y0) : min(h, max(y1, y0 + 1)), max(0, x0) : min(w, max(x1, x0 + 1))] = True
    return m


from medattn.explain.perturbation import deletion_insertion, road_scores  # noqa: E402
from medattn.explain.sanity import randomisation_check, randomise_weights  # noqa: E402
