"""Instances from semantic segmentation output (scikit-image).

Three routes, all returning an ``int32`` label image (0 = background, 1..N instances):

* :func:`connected_instances`: connected components of the foreground.
* :func:`watershed_instances`: marker-controlled watershed on the distance transform, which
  splits touching nuclei (markers are the distance maxima at least ``min_distance`` apart).
* :func:`three_class_instances`: a 3-class head (background / inside / boundary); seeds are the
  connected "inside" regions, grown by watershed over the whole foreground.
* :func:`hover_instances`: a hover head (nuclear pixels + horizontal/vertical distance maps to
  each nucleus's centre); the maps flip sign between touching nuclei, so their Sobel derivatives
  make an edge energy; seeds are confident nuclear pixels of low energy, grown by watershed on
  the energy over the foreground.

:func:`instances_from_output` applies one of them from a settings dict (what a bundle stores),
and :func:`choose_postprocess` picks the setting with the best mean AJI on validation images from
the grid of the head (:func:`postprocess_grid`); :func:`default_postprocess` is the setting of a
head when none was chosen.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.measure import label
from skimage.segmentation import relabel_sequential, watershed

from medattn.errors import DataError

__all__ = ["foreground_mask", "connected_instances", "watershed_instances", "three_class_instances",
           "hover_energy", "hover_instances", "instances_from_output", "choose_postprocess", "check_setting",
           "postprocess_grid", "default_postprocess", "POSTPROCESS_GRID", "POSTPROCESS_GRID_BINARY",
           "POSTPROCESS_GRID_HOVER"]


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
    seed_threshold: float | None = None, fg_threshold: float | None = None,
) -> np.ndarray:
    """Instances from a background / inside / boundary head.

    Args:
        output: class probabilities ``(3, H, W)`` or ``(H, W, 3)``, or a class map ``(H, W)``.
        inside: class index of nucleus interiors.
        boundary: class index of nucleus boundaries.
        min_seed: inside regions smaller than this are not used as seeds.
        min_size: instances smaller than this many pixels are dropped.
        seed_threshold: with probabilities, seeds are pixels whose inside probability is at least
            this (default: pixels whose most likely class is inside). A higher value shrinks the
            seeds, so touching nuclei keep separate seeds.
        fg_threshold: with probabilities, foreground is ``1 − P(background) >= fg_threshold``
            (default: most likely class is not background).
    """
    a = np.asarray(output)
    if a.ndim == 3:
        axis = 0 if a.shape[0] == 3 else (2 if a.shape[2] == 3 else None)
        if axis is None:
            raise DataError(f"3-class output must be (3, H, W) or (H, W, 3), got shape {a.shape}")
        probs = np.moveaxis(a.astype(np.float64), axis, 0)
        cls = probs.argmax(0)
        elevation = -probs[inside]
        if seed_threshold is not None or fg_threshold is not None:
            fg = (1 - probs[0] >= fg_threshold) if fg_threshold is not None else cls != 0
            seed = (probs[inside] >= seed_threshold) if seed_threshold is not None else cls == inside
            cls = np.where(fg, np.where(seed & fg, inside, boundary), 0)
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


def hover_energy(hv: np.ndarray, smooth: float = 1.0) -> np.ndarray:
    """Edge energy ``H×W`` of horizontal/vertical distance maps ``(2, H, W)``.

    Inside a nucleus the horizontal map rises from left to right and the vertical map from top
    to bottom; where they fall instead (between two touching nuclei, at a nucleus's rim) there
    is an edge. The energy is the steepest fall per pixel, ``max(−∂h/∂x, −∂v/∂y, 0)`` by Sobel
    derivatives (after a Gaussian of ``smooth`` pixels, 0 = none): about 0 inside a nucleus and
    about 2 at a sharp boundary between two.
    """
    h, v = (ndi.gaussian_filter(np.asarray(m, np.float64), smooth) if smooth > 0 else np.asarray(m, np.float64)
            for m in hv)
    dh = ndi.sobel(h, axis=1) / 8.0
    dv = ndi.sobel(v, axis=0) / 8.0
    return np.maximum(np.maximum(-dh, -dv), 0.0)


def hover_instances(
    output: np.ndarray, fg_threshold: float = 0.5, seed_threshold: float | None = None,
    energy_threshold: float = 0.02, smooth: float = 0.5, min_seed: int = 4, min_size: int = 10,
) -> np.ndarray:
    """Instances from a hover head: marker-controlled watershed on the edge energy of its maps.

    Args:
        output: ``(4, H, W)``: background and foreground probabilities, horizontal and vertical
            maps, as :func:`medattn.models.outputs.probabilities` gives them for a hover head.
        fg_threshold: foreground is ``P(foreground) >= fg_threshold``.
        seed_threshold: seeds need ``P(foreground) >=`` this (default ``fg_threshold``).
        energy_threshold: seeds are foreground pixels whose :func:`hover_energy` is below this
            (about 0: where both maps rise, as inside a nucleus; a trained network blurs the
            fall between touching nuclei, so their contact is often below 0.2).
        smooth: Gaussian sigma on the maps before their derivatives.
        min_seed: seeds smaller than this many pixels (after an opening) are not used.
        min_size: instances smaller than this many pixels are dropped.
    """
    a = np.asarray(output)
    if a.ndim != 3 or a.shape[0] != 4:
        raise DataError(f"hover output must be (4, H, W) (background, foreground, horizontal, vertical), "
                        f"got shape {a.shape}")
    p = a[1].astype(np.float64)
    fg = p >= fg_threshold
    if not fg.any():
        return np.zeros(fg.shape, np.int32)
    energy = hover_energy(a[2:], smooth)
    seeds = (p >= (fg_threshold if seed_threshold is None else seed_threshold)) & (energy < energy_threshold) & fg
    seeds = ndi.binary_fill_holes(ndi.binary_opening(seeds))
    markers = label(seeds, connectivity=1)
    if min_seed > 1 and markers.max() > 0:
        markers = _finish(markers, min_seed)
    if markers.max() == 0:
        return connected_instances(fg, min_size=min_size)
    lab = watershed(energy, markers, mask=fg)
    # foreground pieces without any seed become instances of their own
    rest = label(fg & (lab == 0), connectivity=1)
    lab = np.where(rest > 0, rest + lab.max(), lab)
    return _finish(lab, min_size)


# Settings tried on validation images; the 3-class ones need a (3, H, W) probability output.
POSTPROCESS_GRID_BINARY: list[dict[str, Any]] = [
    {"method": "watershed", "min_distance": d, "min_size": m} for d in (3, 5, 8) for m in (10, 30, 60)
] + [{"method": "connected", "min_size": 10}]
POSTPROCESS_GRID: list[dict[str, Any]] = [
    {"method": "three_class", "seed_threshold": t, "fg_threshold": f, "min_seed": 4, "min_size": m}
    for t in (0.5, 0.7, 0.9) for f in (0.4, 0.5) for m in (10, 30)
] + POSTPROCESS_GRID_BINARY

# the hover ones need the (4, H, W) output of a hover head
POSTPROCESS_GRID_HOVER: list[dict[str, Any]] = [
    {"method": "hover", "fg_threshold": f, "energy_threshold": e, "smooth": g, "min_seed": 4, "min_size": m}
    for f in (0.4, 0.5) for e in (0.01, 0.03, 0.1) for g in (0.5, 1.0) for m in (10, 30)
] + POSTPROCESS_GRID_BINARY

_METHOD_ARGS = {
    "connected": {"threshold", "min_size", "connectivity"},
    "watershed": {"threshold", "min_distance", "min_size", "smooth"},
    "three_class": {"min_seed", "min_size", "seed_threshold", "fg_threshold"},
    "hover": {"fg_threshold", "seed_threshold", "energy_threshold", "smooth", "min_seed", "min_size"},
}


def postprocess_grid(seg_target: str) -> list[dict[str, Any]]:
    """The settings tried on validation for a head (``binary``, ``three_class`` or ``hover``)."""
    return {"three_class": POSTPROCESS_GRID, "hover": POSTPROCESS_GRID_HOVER}.get(seg_target, POSTPROCESS_GRID_BINARY)


def default_postprocess(seg_target: str, n_channels: int) -> dict[str, Any]:
    """The setting of a head when none was chosen on validation (or stored in its bundle):
    ``hover`` for a hover head, ``three_class`` for a 3-class one, else connected components."""
    if seg_target == "hover":
        return {"method": "hover"}
    return {"method": "three_class"} if seg_target == "three_class" or n_channels == 3 else {"method": "connected"}


def check_setting(setting: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(method, arguments)`` of a post-processing setting; :class:`DataError` names what is wrong."""
    if not isinstance(setting, dict):
        raise DataError(f"a post-processing setting is a mapping like {{method: watershed}}, got {setting!r}")
    s = dict(setting)
    method = s.pop("method", None)
    if method not in _METHOD_ARGS:
        raise DataError(f"post-processing method {method!r} is unknown; use one of {sorted(_METHOD_ARGS)}")
    bad = set(s) - _METHOD_ARGS[method]
    if bad:
        raise DataError(f"post-processing '{method}' got unknown setting(s) {sorted(bad)}; "
                        f"allowed: {sorted(_METHOD_ARGS[method])}")
    return method, s


def instances_from_output(output: np.ndarray, setting: dict[str, Any]) -> np.ndarray:
    """Instance labels of one image from its probabilities and a post-processing ``setting``.

    Args:
        output: ``(K, H, W)`` class probabilities (K = 2 or 3; channel 0 = background), the
            ``(4, H, W)`` output of a hover head, or an ``(H, W)`` foreground probability map.
        setting: ``{"method": "three_class" | "hover" | "watershed" | "connected", **arguments}``
            with the arguments of :func:`three_class_instances`, :func:`hover_instances`,
            :func:`watershed_instances` or :func:`connected_instances`.
    """
    method, s = check_setting(setting)
    a = np.asarray(output)
    if method == "hover":
        return hover_instances(a, **s)
    if method == "three_class":
        if a.ndim != 3 or a.shape[0] != 3:
            raise DataError(f"'three_class' post-processing needs (3, H, W) probabilities, got shape {a.shape}")
        return three_class_instances(a, **s)
    fg = 1 - a[0] if a.ndim == 3 else a
    if method == "watershed":
        return watershed_instances(fg, **s)
    return connected_instances(fg, **s)


def choose_postprocess(
    outputs: list[np.ndarray], truths: list[np.ndarray], grid: list[dict[str, Any]] | None = None,
    seg_target: str | None = None,
) -> tuple[dict[str, Any], float, list[tuple[dict[str, Any], float]]]:
    """The setting of ``grid`` with the highest mean AJI over validation images.

    Args:
        outputs: per image, probabilities as :func:`instances_from_output` takes them.
        truths: per image, the instance label mask (0 = background).
        grid: settings to try; default :func:`postprocess_grid` of ``seg_target``, or without it
            :data:`POSTPROCESS_GRID` for 3-class outputs, else :data:`POSTPROCESS_GRID_BINARY`.
        seg_target: the head that made ``outputs`` (``binary``, ``three_class``, ``hover``).

    Returns:
        ``(best setting, its mean AJI, [(setting, mean AJI), ...] for the whole grid)``.
    """
    from medattn.metrics.instance import instance_metrics

    if not outputs or len(outputs) != len(truths):
        raise DataError(f"choose_postprocess needs one truth per output and at least one image "
                        f"(got {len(outputs)} outputs, {len(truths)} truths)")
    if grid is None:
        three = all(np.ndim(o) == 3 and np.shape(o)[0] == 3 for o in outputs)
        grid = postprocess_grid(seg_target or ("three_class" if three else "binary"))
    scores = []
    for setting in grid:
        ajis = [instance_metrics(t, instances_from_output(o, setting))["aji"] for o, t in zip(outputs, truths, strict=True)]
        scores.append((dict(setting), float(np.mean(ajis))))
    best = max(scores, key=lambda r: r[1])
    return best[0], best[1], scores
