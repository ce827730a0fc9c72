"""Nuclei over a slide region (``--region x,y,w,h``) or all tissue, block by block.

The region is cut into blocks of ``block`` model pixels. Each block is read with a halo of context
on every side, predicted by the tiled core, post-processed whole, and keeps the instances whose
centroid lies in its own core (:func:`medattn.infer.instances.keep_centred`): a nucleus crossing
a block border is whole in exactly one block. Objects and polygons are appended per block
(``nuclei.part.csv``, ``nuclei.part.ndjson``) and the block is then marked done in ``blocks.csv``, so a rerun
with ``resume`` skips finished blocks and drops any half-written one; ``nuclei.geojson`` is
and ``nuclei.csv`` are assembled at the end from finished blocks only. Coordinates are level-0 pixels.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from medattn.errors import ConfigError
from medattn.infer.records import ResultLog, read_rows
from medattn.infer.slide_io import SlideReader, choose_level, model_mpp, open_slide, tissue_overview

__all__ = ["run_slide_segmentation", "BlockDataset", "block_grid"]


def block_grid(x0: int, y0: int, w: int, h: int, block_l0: float) -> list[tuple[int, int, int, int]]:
    """Level-0 ``(x, y, w, h)`` blocks covering the region (the last row/column may be narrower)."""
    out = []
    nx, ny = max(1, int(np.ceil(w / block_l0))), max(1, int(np.ceil(h / block_l0)))
    for j in range(ny):
        for i in range(nx):
            bx, by = x0 + int(round(i * block_l0)), y0 + int(round(j * block_l0))
            bw = min(x0 + w, x0 + int(round((i + 1) * block_l0))) - bx
            bh = min(y0 + h, y0 + int(round((j + 1) * block_l0))) - by
            out.append((bx, by, bw, bh))
    return out


class BlockDataset(Dataset):
    """Blocks (with halo) of a slide at model scale, prepared by the bundle's
    :class:`~medattn.data.transforms.Preparation` (stain at the region's own scale → resize to the
    model scale → normalise)."""

    def __init__(self, reader: SlideReader, blocks: list[tuple[int, int, int, int]], f: float, halo: int,
                 level: int, ds: float, prep: Any) -> None:
        self.reader, self.blocks, self.f, self.halo, self.level, self.ds = reader, blocks, f, halo, level, ds
        self.prep = prep

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        bx, by, bw, bh = self.blocks[i]
        mw, mh = int(round(bw / self.f)) + 2 * self.halo, int(round(bh / self.f)) + 2 * self.halo
        ox, oy = bx - self.halo * self.f, by - self.halo * self.f
        rw, rh = max(1, int(round(mw * self.f / self.ds))), max(1, int(round(mh * self.f / self.ds)))
        a = self.reader.read_region(int(round(ox)), int(round(oy)), self.level, rw, rh)
        return self.prep(a, size=(mh, mw)), i


def _assemble(out: Path, done: set[str]) -> int:
    """``nuclei.geojson`` and ``nuclei.csv`` holding only finished blocks' objects."""
    from medattn.infer.records import format_cell
    from medattn.io import atomic_path, atomic_write_text

    n = 0
    part = out / "nuclei.part.ndjson"
    with atomic_path(out / "nuclei.geojson") as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write('{"type":"FeatureCollection","features":[')
        if part.is_file():
            with open(part, encoding="utf-8") as src:
                for line in src:
                    if not line.endswith("\n"):
                        break
                    feat = json.loads(line)
                    if feat["properties"].get("block") in done:
                        fh.write(("," if n else "") + line.rstrip("\n"))
                        n += 1
        fh.write("]}\n")
    rows = [r for r in read_rows(out / "nuclei.part.csv") if r.get("block") in done]
    if rows:
        import csv
        import io

        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows({k: format_cell(v) for k, v in r.items()} for r in rows)
        atomic_write_text(out / "nuclei.csv", buf.getvalue())
    return n


def run_slide_segmentation(predictor: Any, slide: str | Path, opts: Any) -> dict[str, Any]:
    """Nuclei of a slide region (or of every tissue block) as QuPath detections."""
    from medattn.infer.geojson import instance_polygons, nucleus_feature
    from medattn.infer.instances import (
        grey_image,
        instances_of,
        keep_centred,
        object_table,
        postprocess_setting,
        semantic_classes,
    )
    from medattn.infer.tiling import tiled_dense_probs
    from medattn.infer.tissue import tile_tissue_fraction
    from medattn.io import atomic_write_json

    t_start = time.perf_counter()
    out = Path(opts.out)
    reader = open_slide(slide)
    smpp = opts.mpp or reader.mpp
    if not smpp:
        raise ConfigError(f"slide '{reader.path}' has no µm/px in its metadata; pass --mpp")
    mmpp = model_mpp(predictor.meta, opts.model_mpp, f"bundle '{getattr(predictor, 'source', '')}'")
    f = mmpp / smpp
    level = choose_level(reader.level_downsamples, f)
    window, overlap = predictor.seg_tiling()
    halo = max(overlap, 32)
    if opts.block < window:
        raise ConfigError(f"--block {opts.block} is smaller than the model's tile {window}")
    W, H = reader.dimensions
    x0, y0, w, h = opts.region or (0, 0, W, H)
    if w < 1 or h < 1 or x0 < 0 or y0 < 0 or x0 + w > W or y0 + h > H:
        raise ConfigError(f"--region {x0},{y0},{w},{h} is not inside the slide (level 0 is {W}×{H})")
    blocks = block_grid(x0, y0, w, h, opts.block * f)
    t0 = time.perf_counter()
    if opts.region is None:  # all tissue: skip blocks without any
        _, mask, mscale = tissue_overview(reader, opts.tissue_method, 16.0 * f)
        keep = [b for b in blocks if tile_tissue_fraction(mask, np.array([b[0]]), np.array([b[1]]),
                                                          max(b[2], b[3]), mscale)[0] > 0]
        blocks = keep
    t_tissue = time.perf_counter() - t0
    bdone = ResultLog(out / "blocks.csv", "block", resume=opts.resume, columns=["block", "x", "y", "w", "h", "objects"])
    objs = ResultLog(out / "nuclei.part.csv", "key", resume=opts.resume)
    if not opts.resume:
        (out / "nuclei.part.ndjson").unlink(missing_ok=True)
    ids = [f"{b[0]}_{b[1]}" for b in blocks]
    todo = [i for i, b in enumerate(ids) if b not in bdone.done]
    setting = postprocess_setting(predictor.meta, len(predictor.class_names))
    ds = BlockDataset(reader, [blocks[i] for i in todo], f, halo, level, reader.level_downsamples[level],
                      predictor.preparation)
    loader = DataLoader(ds, batch_size=None, num_workers=min(opts.workers, 1), shuffle=False)
    t0, t_fwd, n_obj = time.perf_counter(), 0.0, 0
    for k, (x, j) in enumerate(loader):
        i = todo[int(j)]
        bx, by, bw, bh = blocks[i]
        tf = time.perf_counter()
        probs = tiled_dense_probs(predictor.predict_tensor, x, window, overlap, max(1, opts.batch_size // 4))
        t_fwd += time.perf_counter() - tf
        labels = instances_of(probs, setting)
        core = (halo, halo, halo + int(round(bh / f)), halo + int(round(bw / f)))
        labels = keep_centred(labels, core)
        origin = (bx - halo * f, by - halo * f)
        rows = object_table(labels, probs, class_names=semantic_classes(predictor, probs.shape[0]),
                            offset=origin, scale=f, mpp=smpp,
                            image=grey_image(x, predictor.meta["mean"], predictor.meta["std"]))
        polys = instance_polygons(labels, offset=origin, scale=f, simplify=0.5 * f)
        lines = []
        for r in rows:
            r["block"], r["key"] = ids[i], f"{ids[i]}#{r['id']}"
            if r["id"] in polys:
                feat = nucleus_feature(polys[r["id"]], r, block=ids[i])
                lines.append(json.dumps(feat, separators=(",", ":")))
        objs.write(rows)
        if lines:
            with open(out / "nuclei.part.ndjson", "a", encoding="utf-8") as fh:
                fh.write("\n".join(lines) + "\n")
        bdone.write([{"block": ids[i], "x": bx, "y": by, "w": bw, "h": bh, "objects": len(rows)}])
        n_obj += len(rows)
        if opts.progress:
            opts.progress(k + 1, len(todo))
    t_infer = time.perf_counter() - t0
    t1 = time.perf_counter()
    n_feat = _assemble(out, bdone.done)
    reader.close()
    blocks_rows = read_rows(out / "blocks.csv")
    summary = {
        "slide": str(reader.path), "task": "segmentation", "region": [x0, y0, w, h] if opts.region else "tissue",
        "slide_mpp": smpp, "model_mpp": mmpp, "level": level, "window": window, "overlap": overlap, "halo": halo,
        "block_model_px": opts.block, "blocks": len(blocks), "blocks_new_this_run": len(todo),
        "nuclei": sum(int(r["objects"]) for r in blocks_rows), "geojson_features": n_feat,
        "postprocess": setting,
        "timings": {"tissue_s": round(t_tissue, 3), "inference_s": round(t_infer, 3), "forward_s": round(t_fwd, 3),
                    "outputs_s": round(time.perf_counter() - t1, 3), "total_s": round(time.perf_counter() - t_start, 3)},
        "outputs": ["nuclei.geojson", "nuclei.csv", "blocks.csv", "summary.json"],
    }
    atomic_write_json(out / "summary.json", summary)
    return summary
