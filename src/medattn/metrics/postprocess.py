"""Instances from semantic segmentation output (scikit-image).

Three routes, all returning an ``int32`` label image (0 = background, 1..N instances):

* :func:`connected_instances`: connected components of the foreground.
* :func:`watershed_instances`: marker-controlled watershed on the distance transform, which
  splits touching nuclei (markers are the distance maxima at least ``min_distance`` apart).
* :func:`three_class_instances`: a 3-class head (background / inside / boundary); seeds are the
  connected "inside" regions, grown by watershed over the whole foreground.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.measure import label
from skimage.segmentation import relabel_sequential, watershed

from medattn.errors import DataError

__all__ = ["foreground_mask", "connected_instances", "watershed_instances", "three_class_instances"]


def foreground_mask(prob_or_mask: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Boolean foreground of a probability map (``>= threshold``) or of a binary/label mask."""
    a = np.asarray(prob_or_mask)
    if a.ndim != 2:
        raise DataError(f"expected a 2-D probability map or mask, got shape {a.shape}; "
                        "pass one image (H, W) at a time")
    if a.dtype == bool:
        return a
    if np.issubdtype(a.dtype, np.floating):
        return a >= threshold
    return a != 0


def _finish(lab: np.ndarray, min_size: int) -> np.ndarray:
    """Drop instances smaller than ``min_size`` pixels and number the rest 1..N."""
    lab = lab.astype(np.int32)
    if min_size > 1 and lab.max() > 0:
        small = np.bincount(lab.ravel()) < min_size
        small[0] = False
        lab[small[lab]] = 0
    return relabel_sequential(lab)[0]


def connected_instances(
    prob_or_mask: np.ndarray, threshold: float = 0.5, min_size: int = 0, connectivity: int = 1,
) -> np.ndarray:
    """Connected components of the foreground.

    Args:
        prob_or_mask: probability map (thresholded at ``threshold``) or binary mask.
        threshold: foreground threshold of a probability map.
        min_size: instances smaller than this many pixels are dropped.
        connectivity: 1 (4-neighbourhood) or 2 (8-neighbourhood).
    """
    fg = foreground_mask(prob_or_mask, threshold)
    return _finish(label(fg, connectivity=connectivity), min_size)


def watershed_instances(
    prob_or_mask: np.ndarray, threshold: float = 0.5, min_distance: int = 3, min_size: int = 10,
    smooth: float = 1.0,
) -> np.ndarray:
    """Marker-controlled watershed on the distance transform of the foreground.

    Args:
        prob_or_mask: probability map or binary mask.
        threshold: foreground threshold of a probability map.
        min_distance: minimum distance (pixels) between two markers; about a nucleus radius.
        min_size: instances smaller than this many pixels are dropped.
        smooth: Gaussian sigma applied to the distance map before finding maxima (0 = none).
    """
    if min_distance < 1:
        raise DataError(f"min_distance must be >= 1, got {min_distance}")
    fg = foreground_mask(prob_or_mask, threshold)
    if not fg.any():
        return np.zeros(fg.shape, np.int32)
    dist = ndi.distance_transform_edt(fg)
    if smooth > 0:
        dist = ndi.gaussian_filter(dist, smooth) * fg
    comps = label(fg, connectivity=1)
    peaks = peak_local_max(dist, min_distance=min_distance, labels=comps, exclude_border=False)
    markers = np.zeros(fg.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # a component without any peak (e.g. a thin sliver) keeps one marker of its own
    missing = np.setdiff1d(np.unique(comps[fg]), np.unique(comps[markers > 0]))
    if len(missing):
        extra = np.isin(comps, missing)
        markers[extra] = comps[extra] + len(peaks)
    markers = label(markers > 0, connectivity=2) if len(peaks) else markers
    lab = watershed(-dist, markers, mask=fg)
    return _finish(lab, min_size)


def three_class_instances(
    output: np.ndarray, inside: int = 1, boundary: int = 2, min_seed: int = 4, min_size: int = 10,
) -> np.ndarray:
    """Instances from a background / inside / boundary head.

    Args:
        output: class probabilities ``(3, H, W)`` or ``(H, W, 3)``, or a class map ``(H, W)``.
        inside: class index of nucleus interiors.
        boundary: class index of nucleus boundaries.
        min_seed: inside regions smaller than this are not used as seeds.
        min_size: instances smaller than this many pixels are dropped.
    """
    a = np.asarray(output)
    if a.ndim == 3:
        axis = 0 if a.shape[0] == 3 else (2 if a.shape[2] == 3 else None)
        if axis is None:
            raise DataError(f"3-class output must be (3, H, W) or (H, W, 3), got shape {a.shape}")
        probs = np.moveaxis(a.astype(np.float64), axis, 0)
        cls = probs.argmax(0)
        elevation = -probs[inside]
    elif a.ndim == 2:
        cls = a.astype(np.int64)
        elevation = None
    else:
        raise DataError(f"3-class output must be (3, H, W), (H, W, 3) or a class map (H, W), got {a.shape}")
    fg = (cls == inside) | (cls == boundary)
    seeds = label(cls == inside, connectivity=1)
    if min_seed > 1 and seeds.max() > 0:
        seeds = _finish(seeds, min_seed)
    if seeds.max() == 0:
        return connected_instances(fg, min_size=min_size)
    if elevation is None:
        elevation = -ndi.distance_transform_edt(cls == inside)
    lab = watershed(elevation, seeds, mask=fg)
    # foreground pieces without any seed become instances of their own
    rest = label(fg & (lab == 0), connectivity=1)
    lab = np.where(rest > 0, rest + lab.max(), lab)
    return _finish(lab, min_size)
