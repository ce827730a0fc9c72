"""CLI verbs of the inference area: ``medattn predict`` (images) and ``medattn slide`` (WSI)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Literal

import typer

from medattn.commands.options import (
    Alpha,
    BatchSize,
    Device,
    MaxMegapixels,
    Mpp,
    OnBadFile,
    Resume,
    Workers,
    on_bad_file_mode,
    positive,
)

__all__ = ["register", "Progress"]


class Progress:
    """Progress with ETA: a live line on a terminal, else one line every ``every`` percent."""

    def __init__(self, label: str, every: float = 5.0, stream: object = None) -> None:
        self.label, self.every = label, every
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.perf_counter()
        self.last = -1.0

    def __call__(self, done: int, total: int) -> None:
        pct = 100.0 * done / max(total, 1)
        el = time.perf_counter() - self.t0
        eta = el / done * (total - done) if done else float("nan")
        msg = f"{self.label}: {done}/{total} ({pct:.0f}%), {el:.0f}s elapsed, ETA {eta:.0f}s"
        if self.tty:
            print(f"\r{msg}   ", end="" if done < total else "\n", file=self.stream, flush=True)  # type: ignore[call-overload]
        elif pct - self.last >= self.every or done == total:
            self.last = pct
            print(msg, file=self.stream, flush=True)  # type: ignore[call-overload]


def predict(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder or .zip.")],
    inputs: Annotated[list[str], typer.Argument(
        help="Image files, folders (searched recursively), globs (quote them) or CSV manifests "
             "(column 'path', relative to the CSV).")],
    out: Annotated[Path, typer.Option(help="Output folder: predictions.csv, bad_files.csv, heatmaps/ "
                                           "(tiled inputs); segmentation: masks/, objects/, geojson/.")],
    resume: Resume = False,
    on_bad_file: OnBadFile = None,
    tile: Annotated[bool | None, typer.Option(
        "--tile/--no-tile", help="Classification: tile every input larger than the model input (--tile) or "
                                 "resize all to it (--no-tile). Default: the bundle's rule (tile inputs over 2x "
                                 "the training size, or refuse them if the bundle says so).")] = None,
    batch_size: BatchSize = 16,
    device: Device = None,
    max_megapixels: MaxMegapixels = 50.0,
    alpha: Alpha = None,
    mpp: Mpp = None,
) -> None:
    """Predict images with BUNDLE: predictions.csv (classification) or instance masks, per-object CSV
    and QuPath GeoJSON (segmentation), written as they come (--resume continues). Unreadable inputs
    are listed in bad_files.csv (--on-bad-file)."""
    from medattn.bundle import load_bundle
    from medattn.infer.predict import PredictOptions, run_predict

    pred = load_bundle(bundle, device=device, max_pixels=int(max_megapixels * 1e6))
    if pred.task == "segmentation":
        from medattn.extras import require_extra

        require_extra("slide", ["shapely"], "medattn predict with a segmentation bundle (QuPath GeoJSON)")
    opts = PredictOptions(out=out, resume=resume, on_bad_file=on_bad_file_mode(on_bad_file), tile=tile,
                          batch_size=batch_size,
                          progress=Progress("predict"),
                          predict_kwargs={k: v for k, v in (("alpha", alpha), ("mpp", mpp)) if v is not None})
    res = run_predict(pred, inputs, opts)
    typer.echo(f"wrote {res['predictions']}: {res['n_done']} predicted ({res['n_new']} new"
               + (f", {res['n_tiled']} tiled" if res["n_tiled"] else "") + f"), {res['n_bad']} unreadable"
               + (f" (listed in {out / 'bad_files.csv'})" if res["n_bad"] else "") + f", {res['seconds']:.1f}s")


def _region(text: str | None) -> tuple[int, int, int, int] | None:
    if not text:
        return None
    try:
        x, y, w, h = (int(float(v)) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"'{text}' is not x,y,w,h (four level-0 pixel numbers, e.g. 0,0,2048,2048)") from None
    if w < 1 or h < 1 or x < 0 or y < 0:
        raise typer.BadParameter(f"'{text}': x and y must be >= 0, w and h >= 1")
    return x, y, w, h


def slide(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder or .zip (patch classifier or nuclei segmenter).")],
    slides: Annotated[list[str], typer.Argument(help="Whole-slide images (SVS, NDPI, MRXS, SCN, pyramidal TIFF, "
                                                     "…; anything OpenSlide or tiffslide reads): files, folders "
                                                     "(searched recursively), globs (quote them) or CSV manifests "
                                                     "(column 'path', relative to the CSV).")],
    out: Annotated[Path, typer.Option(help="Output folder: OUT/<slide>/ per slide (appears when complete), "
                                           "OUT/cohort.csv, OUT/failed_slides.csv. A rerun skips finished slides "
                                           "and resumes interrupted ones.")],
    mpp: Mpp = None,
    model_mpp: Annotated[float | None, typer.Option(callback=positive, help="µm per model-input pixel (overrides the "
                                                                             "bundle's recipe data.mpp; needed when the "
                                                                             "bundle has none).")] = None,
    min_tissue: Annotated[float, typer.Option(min=0.0, max=1.0, help="Least share of a tile covered by tissue for it "
                                                                     "to be predicted (0-1).")] = 0.5,
    tissue_method: Annotated[Literal["saturation", "od"], typer.Option(
        help="Tissue detection: 'saturation' (Otsu on HSV saturation) or 'od' (Otsu on optical density).")
    ] = "saturation",
    region: Annotated[str | None, typer.Option(callback=_region, help="Only this level-0 region x,y,w,h "
                                                                      "(segmentation: the nuclei region; default all "
                                                                      "tissue).")] = None,
    batch_size: BatchSize = 32,
    workers: Workers = 2,
    top_k: Annotated[int, typer.Option(min=1, help="summary.json and cohort.csv report the mean of the top-k tile "
                                                   "probabilities.")] = 10,
    block: Annotated[int, typer.Option(min=1, help="Segmentation: block edge in model pixels (predicted with a "
                                                   "halo; nuclei on block borders are kept once).")] = 2048,
    cam: Annotated[bool, typer.Option(help="Classifiers: also stitch the Grad-CAM of tiles over the threshold "
                                           "into cam.npy and cam.png.")] = False,
    device: Device = None,
    on_bad_file: OnBadFile = None,
    shard: Annotated[str | None, typer.Option(help="K/N: run only the K-th of N stable shards of the slides "
                                                   "(by a hash of the slide id) and write OUT/shards/"
                                                   "cohort-K-of-N.csv; `medattn slide-merge OUT` joins them.")] = None,
    engine: Annotated[Literal["local", "dask"], typer.Option(
        help="'local' (this process) or 'dask' (one task per slide on a Dask cluster; the 'cluster' extra).")
    ] = "local",
    address: Annotated[str | None, typer.Option(help="Dask scheduler address (tcp://host:8786), scheduler file, "
                                                     "or 'auto' (DASK_SCHEDULER_ADDRESS, else a cluster on this "
                                                     "machine).")] = None,
    cpus_per_slide: Annotated[int, typer.Option(min=1, help="Dask: CPU cores (torch threads) each slide task asks "
                                                            "for.")] = 1,
    gpus_per_slide: Annotated[float, typer.Option(min=0.0, help="Dask: GPUs each slide task asks for (workers "
                                                                "declare --resources GPU=n).")] = 0.0,
) -> None:
    """Run BUNDLE over whole slides, one folder per slide. Classifiers: tissue tiles at the bundle's
    scale → tiles.csv, heatmap.tif/.npy, overlay.png, summary.json and slide.geojson (tiles as QuPath
    detections, regions over the bundle threshold as annotations). Segmenters: nuclei.geojson +
    nuclei.csv. A slide that fails is listed in failed_slides.csv and the others go on (exit 2 at the
    end; --on-bad-file error stops at the first)."""
    from medattn.bundle import load_bundle
    from medattn.errors import DataError
    from medattn.extras import require_extra
    from medattn.infer.cohort import CohortOptions, parse_shard, run_cohort, slide_items

    require_extra("slide", [("openslide", "tiffslide"), "shapely"], "medattn slide")
    stop = on_bad_file_mode(on_bad_file) == "error"
    kw = {"mpp": mpp, "model_mpp": model_mpp, "min_tissue": min_tissue, "tissue_method": tissue_method,
          "batch_size": batch_size, "workers": workers, "top_k": top_k, "region": region, "block": block,
          "cam": cam}
    if cam:  # the tile CAMs come from the explain package (above inference)
        from medattn.explain.cam import tile_cams

        kw["cam_maps"] = tile_cams
    shard_kn = parse_shard(shard)
    items = slide_items(slides, exclude=out)

    def show(r: dict) -> None:
        name = r["slide"]
        if r["status"] == "failed":
            typer.echo(f"error: {name} ({r['path']}): {r['error']}", err=True)
            if stop:
                raise DataError(f"slide {name} failed ({r['error']}); --on-bad-file error stops here "
                                "(--on-bad-file skip records it and goes on)")
        elif r["status"] == "skipped":
            typer.echo(f"{name}: finished in an earlier run, skipped ({out / name})")
        elif "nuclei" in r:
            typer.echo(f"{name}: {r['nuclei']} nuclei in {r['blocks']} blocks -> {out / name} ({r['seconds']:.1f}s)")
        else:
            mx = r["max"] if r["max"] is not None else float("nan")
            typer.echo(f"{name}: {r['tiles']} tissue tiles, {100 * r['tumour_fraction']:.1f}% over the threshold, "
                       f"max {mx:.3f} -> {out / name} ({r['seconds']:.1f}s)"
                       + (f"; warnings: {'; '.join(json.loads(r['warnings']))}" if r["warnings"] else ""))

    opts = CohortOptions(out=out, slide=kw, shard=shard_kn, engine=engine, address=address,
                         cpus_per_slide=cpus_per_slide, gpus_per_slide=gpus_per_slide, device=device,
                         progress=lambda it: Progress(it.slide), on_row=show, load=load_bundle)
    res = run_cohort(load_bundle(bundle, device=device), items, opts)
    n = {s: sum(r["status"] == s for r in res["rows"]) for s in ("ok", "skipped", "failed")}
    part = f" (shard {shard}: {res['selected']} of {res['total']} slides)" if shard else ""
    typer.echo(f"cohort{part}: {n['ok']} done, {n['skipped']} skipped, {n['failed']} failed -> {res['table']}")
    if n["failed"]:
        raise DataError(f"{n['failed']} of {res['selected']} slides failed; they are listed in {res['failed_table']} "
                        "(rerun the same command to retry them)")


def slide_merge(
    out: Annotated[Path, typer.Argument(help="The --out folder of the shards (OUT/shards/cohort-K-of-N.csv).")],
) -> None:
    """Join the shard tables of `medattn slide --shard K/N --out OUT` into OUT/cohort.csv and
    OUT/failed_slides.csv (exit 2 when a slide failed)."""
    from medattn.errors import DataError
    from medattn.infer.cohort import merge_shards

    res = merge_shards(out)
    failed = [r for r in res["rows"] if r["status"] == "failed"]
    typer.echo(f"merged {res['shards']} shards: {len(res['rows'])} slides, {len(failed)} failed -> {res['table']}")
    if failed:
        raise DataError(f"{len(failed)} slides failed ({', '.join(r['slide'] for r in failed[:5])}"
                        f"{', …' if len(failed) > 5 else ''}); they are listed in {res['failed_table']}")


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    app.command("predict")(predict)
    app.command("slide")(slide)
    app.command("slide-merge")(slide_merge)
