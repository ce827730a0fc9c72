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

from medattn.errors import ConfigError, DataError
from medattn.infer.inputs import output_names, resolve_inputs
from medattn.infer.records import ResultLog, flatten_result, read_rows

__all__ = ["PredictOptions", "run_predict"]


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


def _tile_heat(image: np.ndarray, grid: np.ndarray, window: int) -> np.ndarray:
    """Per-pixel tile scores of an image tiled by :func:`medattn.infer.tiling.image_tiles` (the last
    row and column are shifted inwards: later tiles cover the overlap, as they were read)."""
    from medattn.infer.tiling import tile_starts

    h, w = image.shape[:2]
    heat = np.full((max(h, window), max(w, window)), np.nan, np.float32)
    for i, y0 in enumerate(tile_starts(heat.shape[0], window, 0)):
        for j, x0 in enumerate(tile_starts(heat.shape[1], window, 0)):
            heat[y0:y0 + window, x0:x0 + window] = grid[i, j]
    return heat[:h, :w]


def _classification_row(predictor: Any, res: dict[str, Any], name: str, opts: PredictOptions) -> dict[str, Any]:
    grid, image = res.pop("tile_scores", None), res.pop("image", None)
    if grid is not None and image is not None:
        from medattn.infer.overlays import write_overlay

        heat = _tile_heat(image, np.asarray(grid), int(res["tile_size"]))
        k = max(1, int(np.ceil(max(heat.shape) / 1200)))
        small = heat[::k, ::k]
        hm = opts.out / "heatmaps" / f"{name}.png"
        th = float(res.get("threshold", 0.5))
        what = predictor.class_names[-1] if predictor.task == "binary" else "not " + predictor.class_names[0]
        write_overlay(hm, image, small, (0, image.shape[1], image.shape[0], 0), th,
                      f"{name}: P({what}) per {res['tile_size']} px tile", um_per_px=res.get("mpp"))
        res["heatmap"] = hm.relative_to(opts.out).as_posix()
    return flatten_result(res)


def _segmentation_row(predictor: Any, res: dict[str, Any], name: str, opts: PredictOptions) -> dict[str, Any]:
    from medattn.bundle_meta import recorded_mpp
    from medattn.infer.geojson import instance_polygons, nucleus_feature, write_geojson
    from medattn.infer.instances import (
        OBJECT_COLUMNS,
        object_table,
        save_label_image,
        semantic_classes,
    )
    from medattn.io import atomic_write_text

    probs, labels, image = res.pop("probability_map"), res.pop("instance_labels"), res.pop("image", None)
    names = semantic_classes(predictor, probs.shape[0])
    # µm measurements at the bundle's training scale, when it records one
    objs = object_table(labels, probs, class_names=names, mpp=recorded_mpp(predictor.meta), image=image)
    mask = save_label_image(labels, opts.out / "masks" / f"{name}.png")
    buf = io.StringIO()
    wr = csv.DictWriter(buf, fieldnames=list(OBJECT_COLUMNS), lineterminator="\n")
    wr.writeheader()
    wr.writerows({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()} for r in objs)
    ocsv = atomic_write_text(opts.out / "objects" / f"{name}.csv", buf.getvalue())
    polys = instance_polygons(labels)
    feats = [nucleus_feature(polys[r["id"]], r, id_in_mask=r["id"]) for r in objs if r["id"] in polys]
    gj = write_geojson(opts.out / "geojson" / f"{name}.geojson", feats)
    res.pop("mask_shape", None)
    if image is not None:
        from medattn.infer.overlays import write_instance_overlay

        ov = opts.out / "overlays" / f"{name}.png"
        write_instance_overlay(ov, image, labels, name, um_per_px=res.get("mpp"))
        res["overlay"] = ov.relative_to(opts.out).as_posix()
    res.update(objects=len(objs), foreground_fraction=float((labels > 0).mean()),
               mask=mask.relative_to(opts.out).as_posix(), objects_csv=ocsv.relative_to(opts.out).as_posix(),
               geojson=gj.relative_to(opts.out).as_posix())
    return flatten_result(res)


def run_predict(predictor: Any, inputs: list[str], opts: PredictOptions) -> dict[str, Any]:
    """Predict every input through :meth:`Predictor.infer <medattn.bundle.Predictor.infer>` (the one
    inference entry); returns counts and the output paths.

    Raises:
        DataError: an unreadable or refused input with ``on_bad_file="error"`` (the outputs so far are kept).
    """
    from medattn.decode import DEFAULT_MAX_PIXELS

    if opts.on_bad_file not in ("skip", "error"):
        raise ConfigError(f"--on-bad-file must be 'skip' or 'error', got {opts.on_bad_file!r}")
    if opts.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {opts.batch_size}")
    seg = predictor.task == "segmentation"
    if not seg:
        predictor.large_input_rule()  # a malformed rule fails before any work
    paths = resolve_inputs(inputs)
    names = output_names(paths)
    log = ResultLog(opts.out / "predictions.csv", "path", resume=opts.resume, columns=None)
    bad_log = ResultLog(opts.out / "bad_files.csv", "path", resume=opts.resume, columns=["path", "error"])
    skip = log.done | bad_log.done
    todo = [(p, n) for p, n in zip(paths, names, strict=True) if str(p) not in skip]
    if hasattr(predictor, "max_pixels") and seg:  # segmentation reads whole fields of view
        predictor.max_pixels = max(predictor.max_pixels, DEFAULT_MAX_PIXELS)

    t0, done = time.perf_counter(), 0
    step = 1 if seg else opts.batch_size
    for i in range(0, len(todo), step):
        chunk = todo[i:i + step]
        results = predictor.infer([p for p, _ in chunk], tile=opts.tile, batch_size=opts.batch_size,
                                  errors="return", keep_image=True, **opts.predict_kwargs)
        rows = []
        for (path, name), res in zip(chunk, results, strict=True):
            if "error" in res:
                why = str(res["error"])
                if opts.on_bad_file == "error":
                    raise DataError(why + ("" if "--on-bad-file" in why else " (--on-bad-file skip lists it and goes on)"))
                bad_log.write([{"path": str(path), "error": why}])
                continue
            row = (_segmentation_row(predictor, res, name, opts) if seg
                   else _classification_row(predictor, res, name, opts))
            rows.append({"path": str(path), **row})
        if rows:
            log.write(rows)
        done += len(chunk)
        if opts.progress:
            opts.progress(done, len(todo))
    log.compact()  # columns no input filled (e.g. ``extra``, ``notes`` when every input declares its scale)
    rows = read_rows(opts.out / "predictions.csv")
    return {"predictions": str(opts.out / "predictions.csv"), "n_inputs": len(paths), "n_done": len(rows),
            "n_new": len(todo), "n_bad": len(read_rows(opts.out / "bad_files.csv")),
            "n_tiled": sum(r.get("handling") == "tiled" for r in rows), "seconds": time.perf_counter() - t0}
