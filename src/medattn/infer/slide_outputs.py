"""Slide outputs, all derived from ``tiles.csv`` and written atomically.

Tiles the reader could not decode (``tile_errors.jsonl``) are marked ``read_error`` in
``tiles.csv`` and left out of everything else. ``heatmap.npy`` / ``heatmap.tif`` (tile-resolution score, NaN where no tissue; the TIFF carries its
resolution in pixels per cm and the µm per heatmap pixel in its description), ``overlay.png``
(thumbnail + heatmap + colour bar with the threshold in cyan), ``summary.json`` and ``slide.geojson`` (tiles as QuPath
detections, regions at the bundle threshold as annotations).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from medattn.io import atomic_path, atomic_write_json

__all__ = ["write_slide_outputs", "heatmap_grid", "write_heatmap_tif"]


def heatmap_grid(tiles: Any, rows: int, cols: int) -> np.ndarray:
    """``rows × cols`` float32 of tile scores, NaN for tiles not predicted."""
    grid = np.full((rows, cols), np.nan, np.float32)
    if len(tiles):
        grid[tiles["row"].to_numpy(int), tiles["col"].to_numpy(int)] = tiles["score"].to_numpy(np.float32)
    return grid


def write_heatmap_tif(path: Path, grid: np.ndarray, um_per_px: float, origin: tuple[int, int],
                      slide_mpp: float) -> None:
    """Float32 TIFF with resolution (pixels per cm) and a JSON description of its placement."""
    import tifffile

    px_per_cm = 1e4 / um_per_px
    desc = json.dumps({"medattn": "slide heatmap", "um_per_pixel": um_per_px, "slide_mpp": slide_mpp,
                       "level0_origin": list(origin), "level0_px_per_pixel": um_per_px / slide_mpp,
                       "nan": "no tissue / not predicted"})
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, grid.astype(np.float32), description=desc, resolution=(px_per_cm, px_per_cm),
                         resolutionunit="CENTIMETER", metadata=None)


def _geojson(predictor: Any, tiles: Any, plan: Any, threshold: float, path: Path) -> int:
    from medattn.infer.geojson import feature, region_polygons, tile_polygon, write_geojson

    names = list(predictor.class_names)
    pos_name = names[-1] if predictor.task == "binary" else "positive"
    neg_name = names[0] if predictor.task == "binary" else "negative"
    t = plan.tile_l0
    feats = []
    xs, ys, sc = tiles["x"].to_numpy(float), tiles["y"].to_numpy(float), tiles["score"].to_numpy(float)
    ood = tiles["ood"].to_numpy(float) if "ood" in tiles else np.full(len(tiles), np.nan)
    sets = tiles["set"].astype(str).to_numpy() if "set" in tiles else np.full(len(tiles), "")
    for x, y, s, o, st in zip(xs, ys, sc, ood, sets, strict=True):
        m = {"probability": s, "ood": o, "set_size": len(st.split("|")) if st and st != "nan" else None}
        extra = {"set": st} if st and st != "nan" else {}
        feats.append(feature(tile_polygon(x, y, t, t), "detection", pos_name if s >= threshold else neg_name,
                             m, **extra))
    pos = sc >= threshold
    regions = region_polygons([(x, y, t, t) for x, y in zip(xs[pos], ys[pos], strict=True)])
    if regions:
        import shapely

        centres = shapely.points(xs[pos] + t / 2, ys[pos] + t / 2)
        for poly in regions:
            inside = shapely.contains(poly, centres)
            um2 = poly.area * plan.slide_mpp ** 2
            feats.append(feature(poly, "annotation", pos_name, {
                "probability": float(sc[pos][inside].mean()) if inside.any() else float("nan"),
                "max_probability": float(sc[pos][inside].max()) if inside.any() else float("nan"),
                "area_mm2": um2 / 1e6, "tiles": int(inside.sum())}))
    write_geojson(path, feats)
    return len(regions)


def _mark_read_errors(out: Path, slide: str) -> tuple[int, list[str]]:
    """Tiles the reader could not decode (its ``tile_errors.jsonl``) get ``status`` ``read_error``
    and no score in ``tiles.csv`` (rewritten atomically; the others get ``ok``), so the heatmap,
    GeoJSON and scores leave them out. Returns ``(count, warnings)``.

    Raises:
        DataError: no tile of the slide could be decoded.
    """
    import csv

    from medattn.errors import DataError
    from medattn.infer.records import read_rows
    from medattn.infer.slide_io import TILE_ERRORS, read_tile_errors

    errors = {(int(e["x"]), int(e["y"])): e["error"] for e in read_tile_errors(out / TILE_ERRORS)}
    rows = read_rows(out / "tiles.csv")
    if not errors or not rows:
        return 0, []
    bad: list[str] = []
    for r in rows:
        if (int(float(r["x"])), int(float(r["y"]))) in errors and r.get("status") != "ok":
            r["status"] = "read_error"
            bad.append(r["tile"])
            for c in r:
                if c == "score" or c.startswith("prob_"):
                    r[c] = ""
        else:
            r["status"] = r.get("status") or "ok"
    bad = sorted(set(bad), key=lambda t: tuple(int(v) for v in t.split("_")))
    if len(bad) == len({r["tile"] for r in rows}):
        first = next(iter(errors.values()))
        raise DataError(f"slide '{slide}' is damaged: none of its {len(bad)} tissue tiles could be decoded "
                        f"(first error: {first})")
    cols = list(rows[0])
    with atomic_path(out / "tiles.csv") as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            w = csv.DictWriter(fh, cols, lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
    shown = ", ".join(bad[:5]) + (", …" if len(bad) > 5 else "")
    first = next(iter(errors.values()))
    return len(bad), [f"{len(bad)} tiles could not be decoded ({shown}; {first}); they are marked read_error in "
                      "tiles.csv and left out of the heatmap and scores"]


def _trust_summary(predictor: Any, tiles: Any) -> dict[str, Any]:
    """``tile_ood_share``, ``tile_ood_score_median``, ``ood_threshold``, ``tile_sets``, ``alpha`` and the
    image-level ``ood`` warning text, from the ``ood_score`` / ``set`` columns of ``tiles.csv`` (the
    summary of :func:`medattn.trust.assess.summarise_tiles`, as for tiled images)."""
    from medattn.trust.assess import summarise_tiles

    if not len(tiles) or ("ood_score" not in tiles and "set" not in tiles):
        return {}
    rows: list[dict[str, Any]] = []
    cal = predictor.meta.get("conformal") or {}
    for _, r in tiles.iterrows():
        row: dict[str, Any] = {}
        if "ood_score" in tiles and str(r["ood_score"]) not in ("", "nan"):
            row["ood_score"] = float(r["ood_score"])
        if "set" in tiles and str(r["set"]) not in ("", "nan"):
            row["prediction_set"] = [] if r["set"] == "(empty)" else str(r["set"]).split("|")
            row["alpha"] = cal.get("default_alpha")
        rows.append(row)
    out = summarise_tiles(predictor, rows)
    out["tile_warnings"] = [f"{w['code']}: {w['message']}" for w in out["tile_warnings"]]
    return out


def write_slide_outputs(predictor: Any, reader: Any, plan: Any, opts: Any, thumb: np.ndarray, mask: np.ndarray,
                        mscale: float, *, n_grid: int, n_tissue: int, n_new: int, t_start: float) -> dict[str, Any]:
    """Write every output of a classified slide from its ``tiles.csv``; returns the summary."""
    import pandas as pd

    from medattn.infer.records import read_rows

    t0 = time.perf_counter()
    out = Path(opts.out)
    n_bad, warnings = _mark_read_errors(out, reader.path)
    tiles = pd.DataFrame(read_rows(out / "tiles.csv"))
    if len(tiles):
        tiles = tiles.drop_duplicates("tile", keep="last")
        if "status" in tiles:
            tiles = tiles[tiles["status"].isin(["ok", ""])]
        for c in ("row", "col"):
            tiles[c] = tiles[c].astype(int)
        for c in ("x", "y", "score"):
            tiles[c] = tiles[c].astype(float)
    if n_tissue == 0:
        warnings.append(f"no tissue tiles (min_tissue {opts.min_tissue:g}, {opts.tissue_method} tissue detection)")
    grid = heatmap_grid(tiles, plan.rows, plan.cols)
    threshold = float(predictor.threshold) if predictor.task == "binary" else 0.5
    um_tile = plan.tile_l0 * plan.slide_mpp
    with atomic_path(out / "heatmap.npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, grid)
    write_heatmap_tif(out / "heatmap.tif", grid, um_tile, plan.origin, plan.slide_mpp)
    ox, oy = plan.origin
    extent = (ox / mscale, (ox + plan.cols * plan.tile_l0) / mscale, (oy + plan.rows * plan.tile_l0) / mscale,
              oy / mscale)
    from medattn.infer.overlays import write_overlay

    write_overlay(out / "overlay.png", thumb, grid, extent, threshold,
                  f"{Path(reader.path).name}: P({predictor.class_names[-1]}) per {um_tile:.0f} µm tile",
                  um_per_px=mscale * plan.slide_mpp)
    n_regions = _geojson(predictor, tiles, plan, threshold, out / "slide.geojson") if len(tiles) else 0
    scores = tiles["score"].to_numpy(float) if len(tiles) else np.zeros(0)
    k = min(opts.top_k, len(scores))
    tile_mm2 = (um_tile / 1e3) ** 2
    pos = int((scores >= threshold).sum())
    trust = _trust_summary(predictor, tiles)
    warnings += trust.pop("tile_warnings", [])
    opts.timings["outputs_s"] = time.perf_counter() - t0
    opts.timings["total_s"] = time.perf_counter() - t_start
    summary = {
        "slide": str(reader.path), "vendor": reader.vendor, "dimensions": list(reader.dimensions),
        "slide_mpp": plan.slide_mpp, "model_mpp": plan.model_mpp, "level": plan.level,
        "level_downsample": reader.level_downsamples[plan.level], "tile_level0_px": plan.tile_l0,
        "tile_um": um_tile, "read_px": plan.read_px, "model_px": plan.out_px, "region_origin": list(plan.origin),
        "grid": [plan.rows, plan.cols], "tiles_total": n_grid, "tiles_tissue": n_tissue,
        "tiles_predicted": int(len(tiles)), "tiles_new_this_run": n_new, "min_tissue": opts.min_tissue,
        "tissue_method": opts.tissue_method, "tissue_area_mm2": float(mask.sum() * (mscale * plan.slide_mpp / 1e3) ** 2),
        "threshold": threshold, "positive_tiles": pos, "positive_area_mm2": pos * tile_mm2,
        "positive_fraction": pos / len(scores) if len(scores) else 0.0,
        "max_probability": float(scores.max()) if len(scores) else None,
        f"top{opts.top_k}_mean_probability": float(np.sort(scores)[-k:].mean()) if k else None,
        "regions": n_regions, "tiles_read_error": n_bad, **trust, "warnings": warnings,
        "bundle": getattr(predictor, "source", ""),
        "timings": {k2: round(v, 3) for k2, v in opts.timings.items()},
        "outputs": [f for f in ("tiles.csv", "heatmap.npy", "heatmap.tif", "overlay.png", "slide.geojson")
                    if (out / f).is_file()] + ["summary.json"],  # no tissue: no tiles.csv
    }
    atomic_write_json(out / "summary.json", summary)
    return summary
