"""``medattn predict``: a bundle over many images, results written as they come.

Classification bundles write ``predictions.csv`` (path, each class probability, label(s),
threshold(s) and whatever else the bundle's predictor returns per item). An input much larger than
the model's input is never silently squashed: by the bundle's ``large_input`` rule (default: tile
when either side exceeds 2× the training size) it is predicted tile by tile at its own scale (the
row says ``tiled``, with tile max/mean and a heatmap PNG), or refused with the fix.

Segmentation bundles predict each image by overlapping tiles with the bundle's tiling, TTA and
instance post-processing, and write per input an instance label image (``masks/``), a per-object
CSV (``objects/``) and a QuPath GeoJSON (``geojson/``); ``predictions.csv`` lists them.

The predictor is duck-typed (a :class:`medattn.bundle.Predictor`): this module never imports the
bundle, which sits above it.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medattn.errors import ConfigError, DataError
from medattn.infer.inputs import output_names, resolve_inputs
from medattn.infer.records import ResultLog, flatten_result, read_rows
from medattn.infer.tiling import (
    effective_overlap,
    tiled_dense_probs,
    tiled_patch_probs,
    to_model_tensor,
)

__all__ = ["PredictOptions", "run_predict", "large_input_rule", "seg_tiling", "normalised", "BASE_COLUMNS"]

BASE_COLUMNS = ["path", "width", "height", "handling", "tiles", "tile_max", "tile_mean", "heatmap"]


@dataclass
class PredictOptions:
    """Options of :func:`run_predict` (the CLI flags)."""

    out: Path
    resume: bool = False
    on_bad_file: str = "skip"
    tile: bool | None = None
    """``None``: the bundle's rule; ``True``: tile any input larger than the model input;
    ``False``: resize every input to the model input (recorded as ``resized``)."""
    batch_size: int = 16
    progress: Callable[[int, int], None] | None = None
    predict_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments of ``predictor.predict`` (e.g. ``alpha`` of conformal sets)."""


def large_input_rule(meta: dict[str, Any]) -> tuple[str, float]:
    """``(policy, factor)`` of a classification bundle: inputs with a side over ``factor`` × the
    training size are tiled (``"tile"``) or refused (``"refuse"``). Default ``("tile", 2.0)``."""
    rule = meta.get("large_input") or {}
    policy, factor = str(rule.get("policy", "tile")), float(rule.get("factor", 2.0))
    if policy not in ("tile", "refuse") or factor < 1:
        raise ConfigError(f"bundle large_input {rule!r} is malformed; policy is 'tile' or 'refuse', factor >= 1")
    return policy, factor


def seg_tiling(meta: dict[str, Any]) -> tuple[int, int]:
    """``(window, overlap)`` of a segmentation bundle: its evaluation tiling (else the input size)."""
    ev = ((meta.get("recipe") or {}).get("evaluation") or {})
    size = meta["input_size"]
    window = int(ev.get("tile_size") or (size if isinstance(size, (int, float)) else size[0]))
    overlap = effective_overlap(window, int(ev.get("tile_overlap", 64)))
    return window, overlap


def normalised(predictor: Any, image: Any) -> torch.Tensor:
    """``C×H×W`` float tensor of a PIL image at its own size, normalised like training."""
    return to_model_tensor(np.asarray(image), list(predictor.meta["mean"]), list(predictor.meta["std"]),
                           predictor.meta.get("stain_normalization"))


def _heatmap_png(grid: np.ndarray, path: Path) -> None:
    """Tile probabilities as a small colour PNG (viridis, each tile ≥ 16 px)."""
    from matplotlib import colormaps
    from PIL import Image

    from medattn.io import atomic_path

    rgb = (colormaps["viridis"](np.clip(grid, 0, 1))[..., :3] * 255).astype(np.uint8)
    k = max(1, int(np.ceil(16 / max(1, min(grid.shape)))))
    img = Image.fromarray(np.kron(rgb, np.ones((k, k, 1), np.uint8)))
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def _aggregate(predictor: Any, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image-level probabilities from per-tile ones, and the per-tile score shown in the heatmap.

    Binary and multi-label: the maximum over tiles (an image is positive when any part is);
    multi-class: the mean over tiles. The score is P(positive) or 1 − P(first class).
    """
    if predictor.task == "multiclass":
        return probs.mean(0), 1 - probs[:, 0]
    score = probs if probs.ndim == 1 else probs.max(1)
    return probs.max(0), score


def _classify_tiled(predictor: Any, image: Any, opts: PredictOptions, name: str) -> dict[str, Any]:
    h, w = predictor.input_hw
    x = normalised(predictor, image)
    if h != w:
        raise DataError(f"tiling needs a square model input, the bundle's is {h}×{w}")
    boxes, probs = tiled_patch_probs(predictor.predict_tensor, x, h, 0, opts.batch_size)
    agg, score = _aggregate(predictor, np.asarray(probs))
    ys, xs = sorted({b[0] for b in boxes}), sorted({b[1] for b in boxes})
    grid = score.reshape(len(ys), len(xs))
    hm = opts.out / "heatmaps" / f"{name}.png"
    _heatmap_png(grid, hm)
    res = predictor.format_probs(agg)
    return {"handling": "tiled", "tiles": len(boxes), "tile_max": float(score.max()),
            "tile_mean": float(score.mean()), "heatmap": hm.relative_to(opts.out).as_posix(), **flatten_result(res)}


def _classify_batch(predictor: Any, items: list[tuple[Path, str, Any]], opts: PredictOptions,
                    bad: Callable[[Path, str], None]) -> list[dict[str, Any]]:
    policy, factor = large_input_rule(predictor.meta)
    h, w = predictor.input_hw
    plain: list[tuple[int, Any]] = []
    rows: list[dict[str, Any] | None] = [None] * len(items)
    for i, (path, name, img) in enumerate(items):
        W, H = img.size
        base = {"path": str(path), "width": W, "height": H}
        large = W > factor * w or H > factor * h
        if opts.tile is True and (W > w or H > h) or (opts.tile is None and large and policy == "tile"):
            rows[i] = {**base, **_classify_tiled(predictor, img, opts, name)}
        elif opts.tile is None and large:
            bad(path, f"is {W}×{H}, over {factor:g}× the model's {w}×{h} input; the bundle's rule refuses "
                      "large inputs: crop it to the model's field of view, or pass --tile to tile it")
        else:
            rows[i] = {**base, "handling": "as-is" if (W, H) == (w, h) else "resized"}
            plain.append((i, img))
    if plain:
        results = predictor.predict([img for _, img in plain], **opts.predict_kwargs)
        for (i, _), res in zip(plain, results, strict=True):
            rows[i] = {**rows[i], **flatten_result(res)}  # type: ignore[dict-item]
    return [r for r in rows if r is not None]


def _segment(predictor: Any, path: Path, name: str, img: Any, opts: PredictOptions) -> dict[str, Any]:
    from medattn.infer.geojson import instance_polygons, nucleus_feature, write_geojson
    from medattn.infer.instances import (
        OBJECT_COLUMNS,
        instances_of,
        object_table,
        postprocess_setting,
        save_label_image,
    )
    from medattn.io import atomic_write_text

    window, overlap = seg_tiling(predictor.meta)
    probs = tiled_dense_probs(predictor.predict_tensor, normalised(predictor, img), window, overlap,
                              max(1, opts.batch_size // 4))
    setting = postprocess_setting(predictor.meta, probs.shape[0])
    labels = instances_of(probs, setting)
    names = semantic_classes(predictor, probs.shape[0])
    from medattn.bundle_meta import recorded_mpp

    # µm measurements at the bundle's training scale, when it records one
    objs = object_table(labels, probs, class_names=names, mpp=recorded_mpp(predictor.meta), image=img)
    mask = save_label_image(labels, opts.out / "masks" / f"{name}.png")
    buf = io.StringIO()
    wr = csv.DictWriter(buf, fieldnames=list(OBJECT_COLUMNS), lineterminator="\n")
    wr.writeheader()
    wr.writerows({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()} for r in objs)
    ocsv = atomic_write_text(opts.out / "objects" / f"{name}.csv", buf.getvalue())
    polys = instance_polygons(labels)
    feats = [nucleus_feature(polys[r["id"]], r, id_in_mask=r["id"]) for r in objs if r["id"] in polys]
    gj = write_geojson(opts.out / "geojson" / f"{name}.geojson", feats)
    W, H = img.size
    return {"path": str(path), "width": W, "height": H, "handling": f"tiled {window}px overlap {overlap}",
            "objects": len(objs), "foreground_fraction": float((labels > 0).mean()),
            "mask": mask.relative_to(opts.out).as_posix(), "objects_csv": ocsv.relative_to(opts.out).as_posix(),
            "geojson": gj.relative_to(opts.out).as_posix(), "postprocess": setting}


def semantic_classes(predictor: Any, k: int) -> list[str] | None:
    """Names of semantic classes 1..K-1 of a segmentation head, or ``None`` for a background /
    inside / boundary head (whose channels are parts of one object, not classes)."""
    recipe = predictor.meta.get("recipe") or {}
    if (recipe.get("task") or {}).get("seg_target") == "three_class" or k <= 2:
        return None
    names = list(predictor.class_names)
    return names[1:k] if len(names) >= k else None


def run_predict(predictor: Any, inputs: list[str], opts: PredictOptions) -> dict[str, Any]:
    """Predict every input; returns counts and the output paths.

    Raises:
        DataError: an unreadable input with ``on_bad_file="error"`` (the outputs so far are kept).
    """
    from medattn.decode import DEFAULT_MAX_PIXELS

    if opts.on_bad_file not in ("skip", "error"):
        raise ConfigError(f"--on-bad-file must be 'skip' or 'error', got {opts.on_bad_file!r}")
    if opts.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {opts.batch_size}")
    paths = resolve_inputs(inputs)
    names = output_names(paths)
    seg = predictor.task == "segmentation"
    log = ResultLog(opts.out / "predictions.csv", "path", resume=opts.resume,
                    columns=None)
    bad_log = ResultLog(opts.out / "bad_files.csv", "path", resume=opts.resume, columns=["path", "error"])
    skip = log.done | bad_log.done
    todo = [(p, n) for p, n in zip(paths, names, strict=True) if str(p) not in skip]
    if opts.tile is None and not seg:
        large_input_rule(predictor.meta)  # a malformed rule fails before any work
    if hasattr(predictor, "max_pixels") and seg:  # segmentation reads whole fields of view
        predictor.max_pixels = max(predictor.max_pixels, DEFAULT_MAX_PIXELS)

    def bad(path: Path, why: str) -> None:
        if opts.on_bad_file == "error":
            raise DataError(f"'{path}' {why}" + ("" if "--on-bad-file" in why else
                                                 " (--on-bad-file skip lists it and goes on)"))
        bad_log.write([{"path": str(path), "error": why}])

    t0, done = time.perf_counter(), 0
    step = 1 if seg else opts.batch_size
    for i in range(0, len(todo), step):
        chunk = []
        for path, name in todo[i:i + step]:
            try:
                chunk.append((path, name, predictor.to_pil(path)))
            except (DataError, OSError, ValueError) as exc:
                bad(path, f"cannot be read: {str(exc).splitlines()[0][:300]}")
        if seg:
            log.write([_segment(predictor, p, n, img, opts) for p, n, img in chunk])
        elif chunk:
            log.write(_classify_batch(predictor, chunk, opts, bad))
        done += len(todo[i:i + step])
        if opts.progress:
            opts.progress(done, len(todo))
    rows = read_rows(opts.out / "predictions.csv")
    return {"predictions": str(opts.out / "predictions.csv"), "n_inputs": len(paths), "n_done": len(rows),
            "n_new": len(todo), "n_bad": len(read_rows(opts.out / "bad_files.csv")),
            "n_tiled": sum(r.get("handling") == "tiled" for r in rows), "seconds": time.perf_counter() - t0}
