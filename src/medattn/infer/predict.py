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


def _heatmap_png(grid: np.ndarray, path: Path) -> None:
    """Tile probabilities as a small colour PNG (viridis, each tile ≥ 16 px)."""
    from matplotlib import colormaps
    from PIL import Image

    from medattn.io import atomic_path

    rgb = (colormaps["viridis"](np.clip(np.nan_to_num(grid), 0, 1))[..., :3] * 255).astype(np.uint8)
    k = max(1, int(np.ceil(16 / max(1, min(grid.shape)))))
    img = Image.fromarray(np.kron(rgb, np.ones((k, k, 1), np.uint8)))
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def _classification_row(res: dict[str, Any], name: str, opts: PredictOptions) -> dict[str, Any]:
    grid = res.pop("tile_scores", None)
    if grid is not None:
        hm = opts.out / "heatmaps" / f"{name}.png"
        _heatmap_png(np.asarray(grid), hm)
        res["heatmap"] = hm.relative_to(opts.out).as_posix()
    return flatten_result(res)


def _segmentation_row(predictor: Any, res: dict[str, Any], name: str, opts: PredictOptions) -> dict[str, Any]:
    from medattn.infer.geojson import feature, instance_polygons, write_geojson
    from medattn.infer.instances import (
        OBJECT_COLUMNS,
        object_table,
        save_label_image,
        semantic_classes,
    )
    from medattn.io import atomic_write_text

    probs, labels = res.pop("probability_map"), res.pop("instance_labels")
    names = semantic_classes(predictor, probs.shape[0])
    objs = object_table(labels, probs, class_names=names)
    mask = save_label_image(labels, opts.out / "masks" / f"{name}.png")
    buf = io.StringIO()
    wr = csv.DictWriter(buf, fieldnames=list(OBJECT_COLUMNS), lineterminator="\n")
    wr.writeheader()
    wr.writerows({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()} for r in objs)
    ocsv = atomic_write_text(opts.out / "objects" / f"{name}.csv", buf.getvalue())
    polys = instance_polygons(labels)
    feats = [feature(polys[r["id"]], "detection", r["class"] or "Nucleus",
                     {"probability": r["mean_probability"], "area_px": r["area"]}, id_in_mask=r["id"])
             for r in objs if r["id"] in polys]
    gj = write_geojson(opts.out / "geojson" / f"{name}.geojson", feats)
    res.pop("mask_shape", None)
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
                                  errors="return", **opts.predict_kwargs)
        rows = []
        for (path, name), res in zip(chunk, results, strict=True):
            if "error" in res:
                why = str(res["error"])
                if opts.on_bad_file == "error":
                    raise DataError(why + ("" if "--on-bad-file" in why else " (--on-bad-file skip lists it and goes on)"))
                bad_log.write([{"path": str(path), "error": why}])
                continue
            row = _segmentation_row(predictor, res, name, opts) if seg else _classification_row(res, name, opts)
            rows.append({"path": str(path), **row})
        if rows:
            log.write(rows)
        done += len(chunk)
        if opts.progress:
            opts.progress(done, len(todo))
    rows = read_rows(opts.out / "predictions.csv")
    return {"predictions": str(opts.out / "predictions.csv"), "n_inputs": len(paths), "n_done": len(rows),
            "n_new": len(todo), "n_bad": len(read_rows(opts.out / "bad_files.csv")),
            "n_tiled": sum(r.get("handling") == "tiled" for r in rows), "seconds": time.perf_counter() - t0}
