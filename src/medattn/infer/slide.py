"""``medattn slide``: a patch classifier over a whole-slide image, streamed tile by tile.

1. Scale: the model's µm/px (bundle ``mpp`` or recipe ``data.mpp``, ``--model-mpp``) and the
   slide's (metadata, ``--mpp``) give the tile edge in level-0 pixels; tiles are read at the
   coarsest level not coarser than needed and resized. No scale on either side → an error.
2. Tissue: Otsu on a low-resolution level (:mod:`medattn.infer.tissue`); tiles with less than
   ``min_tissue`` tissue are skipped.
3. Inference: a DataLoader whose workers read and normalise regions feeds the predictor in
   batches; each batch's rows are appended to ``tiles.csv`` at once, so memory does not grow with
   the slide and a rerun with ``resume`` continues where it stopped.
   Every tile also gets the trust checks of the other doors' tiles (``ood_score``, ``ood``, ``set``).
4. Outputs from ``tiles.csv`` (:mod:`medattn.infer.slide_outputs`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from medattn.errors import ConfigError
from medattn.infer.records import ResultLog
from medattn.infer.slide_io import (
    TILE_ERRORS,
    SlideReader,
    choose_level,
    model_mpp,
    open_slide,
    tissue_overview,
)
from medattn.infer.tissue import tile_tissue_fraction

__all__ = ["SlideOptions", "TilePlan", "plan_tiles", "RegionDataset", "run_slide"]


@dataclass
class SlideOptions:
    """Options of :func:`run_slide` (the CLI flags)."""

    out: Path
    mpp: float | None = None
    """Slide µm/px (overrides the slide's metadata)."""
    model_mpp: float | None = None
    """Model-input µm/px (overrides the bundle's)."""
    min_tissue: float = 0.5
    tissue_method: str = "saturation"
    batch_size: int = 32
    workers: int = 2
    resume: bool = False
    top_k: int = 10
    region: tuple[int, int, int, int] | None = None
    """Level-0 ``(x, y, w, h)``: only this region (segmentation: the nuclei region)."""
    block: int = 2048
    """Segmentation: block edge in model pixels (each block is predicted with a halo)."""
    cam: bool = False
    """Also stitch the Grad-CAM of tiles over the threshold into ``cam.npy`` / ``cam.png``."""
    cam_maps: Callable[[Any, torch.Tensor], np.ndarray] | None = None
    """With ``cam``: ``(predictor, tiles) → B×h×w`` CAMs, :func:`medattn.explain.cam.tile_cams`
    (passed in by the caller: explanations sit above inference)."""
    progress: Callable[[int, int], None] | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class TilePlan:
    """Where the tiles of a slide are and how they are read."""

    level: int
    """Pyramid level the regions are read from."""
    read_px: int
    """Edge of a region at ``level`` (resized to ``out_px``)."""
    out_px: int
    """Model input edge."""
    tile_l0: float
    """Tile edge in level-0 pixels."""
    slide_mpp: float
    model_mpp: float
    cols: int
    rows: int
    origin: tuple[int, int] = (0, 0)


def plan_tiles(reader: SlideReader, meta: dict[str, Any], opts: SlideOptions, input_px: int,
               source: str = "the bundle") -> TilePlan:
    """Tile size, reading level and grid of ``reader`` for a model taking ``input_px`` pixels."""
    smpp = opts.mpp or reader.mpp
    if not smpp:
        raise ConfigError(f"slide '{reader.path}' has no µm/px in its metadata; pass --mpp with the scan "
                          "resolution (e.g. 0.25 for 40x, 0.5 for 20x)")
    mmpp = model_mpp(meta, opts.model_mpp, source)
    f = mmpp / smpp  # level-0 px per model px
    level = choose_level(reader.level_downsamples, f)
    ds = reader.level_downsamples[level]
    read_px = max(1, int(round(input_px * f / ds)))
    tile_l0 = input_px * f
    x0, y0, w, h = opts.region or (0, 0, *reader.dimensions)
    cols, rows = int(w // tile_l0), int(h // tile_l0)
    if cols < 1 or rows < 1:
        raise ConfigError(f"slide region {w}×{h} px is smaller than one tile ({tile_l0:.0f} level-0 px at "
                          f"{smpp:g} µm/px for a {input_px} px model input at {mmpp:g} µm/px)")
    return TilePlan(level, read_px, input_px, tile_l0, float(smpp), mmpp, cols, rows, (int(x0), int(y0)))


class RegionDataset(Dataset):
    """Tiles of a slide prepared by the bundle's :class:`~medattn.data.transforms.Preparation`
    (stain normalisation at the region's own scale → resize to the model input → normalise, as in
    training); each DataLoader worker opens its own slide handle."""

    def __init__(self, reader: SlideReader, boxes: list[tuple[int, int]], level: int, read_px: int,
                 prep: Any) -> None:
        self.reader, self.boxes, self.level, self.read_px, self.prep = reader, boxes, level, read_px, prep

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x, y = self.boxes[i]
        return self.prep(self.reader.read_region(x, y, self.level, self.read_px, self.read_px)), i


def _score_columns(predictor: Any, probs: np.ndarray) -> tuple[np.ndarray, list[str], np.ndarray]:
    """``(score, column names, probability matrix)``: the heatmap score is P(positive) for binary,
    1 − P(first class) for multi-class, the largest label probability for multi-label."""
    names = list(predictor.class_names)
    if probs.ndim == 1:
        return probs, [f"prob_{names[-1]}"], probs[:, None]
    score = 1 - probs[:, 0] if predictor.task == "multiclass" else probs.max(1)
    return score, [f"prob_{n}" for n in names], probs


def _tile_trust(predictor: Any, x: torch.Tensor, probs: np.ndarray,
                details: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Per tile: ``ood_score``, ``ood`` (1 when over the bundle's threshold) and ``set`` (the conformal
    prediction set, classes joined by ``|``), by :func:`medattn.trust.assess.assess` (the same
    checks as every other door's tiles)."""
    from medattn.trust.assess import assess

    ood_t = float((predictor.meta.get("ood") or {}).get("threshold", np.inf))
    out = []
    for r in assess(predictor, None, x, probs, details=details):
        row: dict[str, Any] = {}
        if "ood_score" in r:
            row.update(ood_score=float(r["ood_score"]), ood=int(r["ood_score"] > ood_t))
        if isinstance(r.get("prediction_set"), list):
            row["set"] = "|".join(r["prediction_set"]) or "(empty)"
        out.append(row)
    return out


def run_slide(predictor: Any, slide: str | Path, opts: SlideOptions) -> dict[str, Any]:
    """Classify every tissue tile of ``slide``; write tiles.csv then the slide outputs."""
    from medattn.infer.slide_outputs import write_slide_outputs

    t_start = time.perf_counter()
    if not 0 <= opts.min_tissue <= 1:
        raise ConfigError(f"--min-tissue must be in [0, 1], got {opts.min_tissue}")
    if opts.cam and opts.cam_maps is None:
        raise ConfigError("cam=True needs cam_maps, the tile CAM function (medattn.explain.cam.tile_cams)")
    if predictor.task == "segmentation":
        from medattn.infer.slide_seg import run_slide_segmentation

        return run_slide_segmentation(predictor, slide, opts)
    reader = open_slide(slide, tile_errors=Path(opts.out) / TILE_ERRORS)
    h, w = predictor.input_hw
    if h != w:
        raise ConfigError(f"slides need a square model input, the bundle's is {h}×{w}")
    plan = plan_tiles(reader, predictor.meta, opts, h, f"bundle '{getattr(predictor, 'source', '')}'")
    t0 = time.perf_counter()
    thumb, mask, mscale = tissue_overview(reader, opts.tissue_method, plan.tile_l0 / 8)
    ox, oy = plan.origin
    cc, rr = np.meshgrid(np.arange(plan.cols), np.arange(plan.rows))
    xs, ys = ox + cc.ravel() * plan.tile_l0, oy + rr.ravel() * plan.tile_l0
    frac = tile_tissue_fraction(mask, xs, ys, plan.tile_l0, mscale)
    keep = np.flatnonzero(frac >= max(opts.min_tissue, 1e-9))
    t_tissue = time.perf_counter() - t0

    log = ResultLog(opts.out / "tiles.csv", "tile", resume=opts.resume)
    ids = [f"{rr.ravel()[i]}_{cc.ravel()[i]}" for i in keep]
    todo = [k for k, tid in zip(keep, ids, strict=True) if tid not in log.done]
    boxes = [(int(round(xs[i])), int(round(ys[i]))) for i in todo]
    ds = RegionDataset(reader, boxes, plan.level, plan.read_px, predictor.preparation)
    loader = DataLoader(ds, batch_size=opts.batch_size, shuffle=False, num_workers=opts.workers,
                        persistent_workers=False, prefetch_factor=2 if opts.workers else None)
    cam = None
    if opts.cam:
        from medattn.infer.slide_cam import CamStitcher

        cam = CamStitcher(opts.out, plan.rows, plan.cols, resume=opts.resume)
    threshold = float(predictor.threshold) if predictor.task == "binary" else 0.5
    t0, done = time.perf_counter(), 0
    for x, idx in loader:
        details: dict[str, Any] = {}
        probs = np.asarray(predictor.predict_tensor(x, details))
        score, cols, pm = _score_columns(predictor, probs)
        trust = _tile_trust(predictor, x, probs, details)
        if cam is not None:
            hot = np.flatnonzero(score >= threshold)
            ks = [todo[int(idx[j])] for j in hot]
            if len(hot):
                cam.add(opts.cam_maps(predictor, x[hot]), [int(rr.ravel()[k]) for k in ks],
                        [int(cc.ravel()[k]) for k in ks])
        rows = []
        for j, i in enumerate(idx.tolist()):
            k = todo[i]
            rows.append({"tile": f"{rr.ravel()[k]}_{cc.ravel()[k]}", "row": int(rr.ravel()[k]),
                         "col": int(cc.ravel()[k]), "x": boxes[i][0], "y": boxes[i][1],
                         "size": round(plan.tile_l0, 3), "tissue": round(float(frac[k]), 4),
                         "score": float(score[j]), **{c: float(v) for c, v in zip(cols, pm[j], strict=True)},
                         **trust[j]})
        log.write(rows)
        done += len(rows)
        if opts.progress:
            opts.progress(done, len(todo))
    t_infer = time.perf_counter() - t0
    reader.close()
    opts.timings.update(tissue_s=t_tissue, inference_s=t_infer)
    summary = write_slide_outputs(predictor, reader, plan, opts, thumb, mask, mscale,
                                  n_grid=int(plan.cols * plan.rows), n_tissue=len(keep), n_new=len(todo),
                                  t_start=t_start)
    if cam is not None:
        extent = (ox / mscale, (ox + plan.cols * plan.tile_l0) / mscale, (oy + plan.rows * plan.tile_l0) / mscale,
                  oy / mscale)
        cam.write_png(thumb, extent, f"{Path(reader.path).name}: Grad-CAM of tiles over {threshold:.3g}")
        summary["outputs"] += ["cam.npy", "cam.png"]
        from medattn.io import atomic_write_json

        atomic_write_json(Path(opts.out) / "summary.json", summary)
    return summary
