"""Instances (nuclei) from segmentation probabilities: per-object measurements, block-wise merging.

:func:`object_table` measures every instance of a label image: area, centroid, box and mean
probability in one pass (``np.bincount`` and ``ndimage.find_objects``), perimeter, eccentricity
and mean intensity with scikit-image ``regionprops``, and area in µm² and perimeter in µm when
the scale is known (the measurements QuPath gives its cell detections). :func:`keep_centred` is how large regions are cut into blocks without
cutting or doubling objects: each block is predicted with a halo of context, post-processed whole,
and keeps only the instances whose centroid falls in its core; an object crossing a block border is
complete in the block that owns its centroid and dropped by its neighbour.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from medattn.errors import DataError
from medattn.models.outputs import seg_target_of

__all__ = ["postprocess_setting", "instances_of", "object_table", "keep_centred", "foreground_prob",
           "save_label_image", "grey_image", "OBJECT_COLUMNS", "semantic_classes"]

OBJECT_COLUMNS = ("id", "centroid_x", "centroid_y", "area", "perimeter", "area_um2", "perimeter_um", "eccentricity",
                  "mean_intensity", "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1", "mean_probability", "class")
"""Columns of the per-object table; ``area``/``perimeter`` in (level-0) pixels, ``area_um2`` /
``perimeter_um`` empty when the scale is unknown, ``mean_intensity`` empty without an image."""


def grey_image(image: Any, mean: Any = None, std: Any = None) -> np.ndarray:
    """``H×W`` grey intensities in 0–255 (luminance of RGB) of an image: a PIL image, an ``H×W[×C]``
    array, or a normalised ``C×H×W`` tensor with the ``mean``/``std`` it was normalised with."""
    from skimage.color import rgb2gray

    if hasattr(image, "detach"):  # a normalised network input
        x = image.detach().float().cpu().numpy()
        c = x.shape[0]
        if mean is not None and std is not None:
            x = x * np.asarray(std[:c], np.float32)[:, None, None] + np.asarray(mean[:c], np.float32)[:, None, None]
        arr = np.moveaxis(np.clip(x, 0, 1) * 255, 0, -1)
    else:
        arr = np.asarray(image).astype(np.float32)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3:
        arr = rgb2gray(arr[..., :3] / 255.0) * 255.0
    return arr.astype(np.float32)


def _shape_measurements(lab: np.ndarray, n: int, image: Any) -> dict[str, np.ndarray]:
    """Perimeter (px), eccentricity and mean grey intensity (NaN without ``image``) of labels 0..n."""
    from skimage.measure import regionprops_table

    props = ["label", "perimeter", "eccentricity"]
    grey = None
    if image is not None:
        grey = grey_image(image)
        if grey.shape != lab.shape:
            raise DataError(f"image of shape {grey.shape} does not match the label image {lab.shape}")
        props.append("intensity_mean")
    t = regionprops_table(lab, intensity_image=grey, properties=props)
    out = {k: np.full(n + 1, np.nan) for k in ("perimeter", "eccentricity", "intensity_mean")}
    for k in props[1:]:
        out[k][t["label"]] = t[k]
    return out



def _centroids(lab: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area and centroid (row, column) of labels 0..n of an instance image (NaN for absent labels)."""
    flat = lab.ravel()
    area = np.bincount(flat, minlength=n + 1).astype(np.float64)
    yy, xx = np.indices(lab.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        return area, np.bincount(flat, yy.ravel(), n + 1) / area, np.bincount(flat, xx.ravel(), n + 1) / area

def postprocess_setting(meta: dict[str, Any], n_classes: int) -> dict[str, Any]:
    """The instance post-processing a bundle carries (chosen on validation), or the default of its
    head (:func:`medattn.metrics.postprocess.default_postprocess`)."""
    from medattn.metrics.postprocess import default_postprocess

    setting = meta.get("postprocess") or ((meta.get("recipe") or {}).get("evaluation") or {}).get("postprocess")
    if setting:
        return dict(setting)
    return default_postprocess(seg_target_of(meta), n_classes)


def instances_of(probs: np.ndarray, setting: dict[str, Any]) -> np.ndarray:
    """``int32`` instance labels (0 = background) of class probabilities ``K×H×W``."""
    from medattn.metrics.postprocess import instances_from_output

    return instances_from_output(probs, setting).astype(np.int32, copy=False)


def foreground_prob(probs: np.ndarray) -> np.ndarray:
    """Per-pixel probability of not being background (channel 0)."""
    return 1.0 - probs[0] if probs.ndim == 3 else probs


def object_table(labels: np.ndarray, probs: np.ndarray | None = None, *, class_names: list[str] | None = None,
                 offset: tuple[float, float] = (0.0, 0.0), scale: float = 1.0, mpp: float | None = None,
                 image: Any = None) -> list[dict[str, Any]]:
    """One row per instance (:data:`OBJECT_COLUMNS`): id, centroid, area, perimeter, eccentricity,
    mean intensity, bbox, mean foreground probability, class, and area/perimeter in µm when ``mpp``
    is given.

    Args:
        labels: ``H×W`` instance labels (0 = background).
        probs: ``K×H×W`` class probabilities (channel 0 = background), for the mean probability
            and, when ``class_names`` is given, the object's most likely non-background class.
        class_names: names of semantic classes 1..K-1 (``None`` for a background/inside/boundary
            head, whose channels are not classes).
        offset: ``(x, y)`` added to coordinates after scaling (level-0 position of the image).
        scale: coordinate and length multiplier (level-0 pixels per image pixel); areas are
            multiplied by ``scale²``.
        mpp: µm per output pixel (per level-0 pixel when ``scale`` maps to level 0); ``None``
            leaves ``area_um2`` and ``perimeter_um`` empty.
        image: the image the labels were predicted on (``H×W[×C]`` array, PIL image, or a
            normalised tensor already turned grey by :func:`grey_image`), for ``mean_intensity``
            (grey, 0–255).
    """
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise DataError(f"instance labels must be H×W, got shape {lab.shape}")
    n = int(lab.max()) if lab.size else 0
    if n == 0:
        return []
    flat = lab.ravel()
    area, cy, cx = _centroids(lab, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = (np.bincount(flat, foreground_prob(probs).ravel(), n + 1) / area) if probs is not None else None
        cls_sum = None
        if probs is not None and class_names and probs.shape[0] > 2:
            cls_sum = np.stack([np.bincount(flat, probs[k].ravel(), n + 1) for k in range(1, probs.shape[0])], 1)
    shape = _shape_measurements(lab, n, image)
    boxes = ndi.find_objects(lab)
    ox, oy = offset
    rows = []

    def num(v: float) -> float | str:
        return float(v) if np.isfinite(v) else ""

    for i in range(1, n + 1):
        if area[i] == 0 or boxes[i - 1] is None:
            continue
        sl = boxes[i - 1]
        a, perim = area[i] * scale * scale, shape["perimeter"][i] * scale
        row: dict[str, Any] = {
            "id": i, "centroid_x": ox + scale * (cx[i] + 0.5), "centroid_y": oy + scale * (cy[i] + 0.5),
            "area": a, "perimeter": num(perim),
            "area_um2": a * mpp * mpp if mpp else "", "perimeter_um": num(perim * mpp) if mpp else "",
            "eccentricity": num(shape["eccentricity"][i]), "mean_intensity": num(shape["intensity_mean"][i]),
            "bbox_x0": ox + scale * sl[1].start, "bbox_y0": oy + scale * sl[0].start,
            "bbox_x1": ox + scale * sl[1].stop, "bbox_y1": oy + scale * sl[0].stop,
            "mean_probability": float(mean_p[i]) if mean_p is not None else "",
            "class": class_names[int(np.argmax(cls_sum[i]))] if cls_sum is not None and class_names else "",
        }
        rows.append(row)
    return rows


def keep_centred(labels: np.ndarray, core: tuple[int, int, int, int]) -> np.ndarray:
    """Labels of ``labels`` with only the instances whose centroid lies in ``core``.

    Args:
        labels: instance labels of a block including its halo.
        core: ``(y0, x0, y1, x1)`` of the block's own area in ``labels`` coordinates (half-open:
            an object centred exactly on a shared border belongs to the block below/right).
    """
    n = int(labels.max())
    if n == 0:
        return labels
    area, cy, cx = _centroids(labels, n)
    y0, x0, y1, x1 = core
    keep = (cy >= y0) & (cy < y1) & (cx >= x0) & (cx < x1) & (area > 0)
    keep[0] = False
    out = np.where(keep[labels], labels, 0)
    from skimage.segmentation import relabel_sequential

    return relabel_sequential(out)[0].astype(np.int32)


def save_label_image(labels: np.ndarray, path: str | Path) -> Path:
    """Write an instance label image atomically: 16-bit PNG up to 65,535 objects, else 32-bit TIFF.

    Returns the path written (its suffix may change from ``.png`` to ``.tif``).
    """
    from medattn.io import atomic_path

    p = Path(path)
    n = int(labels.max()) if labels.size else 0
    if n <= 65535 and p.suffix.lower() == ".png":
        from PIL import Image

        with atomic_path(p) as tmp:
            Image.fromarray(labels.astype(np.uint16)).save(tmp, format="PNG")
        return p
    import tifffile

    p = p.with_suffix(".tif")
    with atomic_path(p) as tmp:
        tifffile.imwrite(tmp, labels.astype(np.uint32 if n > 65535 else np.uint16), compression="zlib")
    return p


def semantic_classes(predictor: Any, k: int) -> list[str] | None:
    """Names of semantic classes 1..K-1 of a segmentation head, or ``None`` for a background /
    inside / boundary head or a hover head (whose channels are parts of one object or distance
    maps, not classes)."""
    if seg_target_of(predictor.meta) in ("three_class", "hover") or k <= 2:
        return None
    names = list(predictor.class_names)
    return names[1:k] if len(names) >= k else None
