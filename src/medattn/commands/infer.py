"""CLI verbs of the inference area: ``medattn predict`` (images) and ``medattn slide`` (WSI)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

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
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run in --out: items already in "
                                              "predictions.csv or bad_files.csv are skipped.")] = False,
    on_bad_file: Annotated[str, typer.Option(help="Unreadable input: 'skip' lists it in bad_files.csv and "
                                                  "goes on; 'error' stops with its name.")] = "skip",
    tile: Annotated[bool | None, typer.Option(
        "--tile/--no-tile", help="Classification: tile every input larger than the model input (--tile) or "
                                 "resize all to it (--no-tile). Default: the bundle's rule (tile inputs over 2x "
                                 "the training size, or refuse them if the bundle says so).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images (or tiles) per forward pass.")] = 16,
    device: Annotated[str | None, typer.Option(help="torch device (default: cuda when present, else cpu).")] = None,
    max_megapixels: Annotated[float, typer.Option(help="Largest input image, megapixels (checked before "
                                                       "decoding; larger ones are bad files).")] = 50.0,
    alpha: Annotated[float | None, typer.Option(help="Classification: conformal miscoverage for the "
                                                     "prediction_set column (bundles with conformal "
                                                     "calibration; default: the bundle's).")] = None,
) -> None:
    """Predict images with BUNDLE: predictions.csv (classification) or instance masks, per-object CSV
    and QuPath GeoJSON (segmentation), written as they come (--resume continues)."""
    from medattn.bundle import load_bundle
    from medattn.infer.predict import PredictOptions, run_predict

    pred = load_bundle(bundle, device=device, max_pixels=int(max_megapixels * 1e6))
    opts = PredictOptions(out=out, resume=resume, on_bad_file=on_bad_file, tile=tile, batch_size=batch_size,
                          progress=Progress("predict"), predict_kwargs={} if alpha is None else {"alpha": alpha})
    res = run_predict(pred, inputs, opts)
    typer.echo(f"wrote {res['predictions']}: {res['n_done']} predicted ({res['n_new']} new"
               + (f", {res['n_tiled']} tiled" if res["n_tiled"] else "") + f"), {res['n_bad']} unreadable"
               + (f" (listed in {out / 'bad_files.csv'})" if res["n_bad"] else "") + f", {res['seconds']:.1f}s")


def _region(text: str | None) -> tuple[int, int, int, int] | None:
    from medattn.errors import ConfigError

    if not text:
        return None
    try:
        x, y, w, h = (int(float(v)) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--region '{text}' is not x,y,w,h (four level-0 pixel numbers, e.g. 0,0,2048,2048)") from None
    return x, y, w, h


def slide(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder or .zip (patch classifier or nuclei segmenter).")],
    slides: Annotated[list[Path], typer.Argument(help="Whole-slide images (SVS, NDPI, MRXS, SCN, pyramidal TIFF, "
                                                      "DICOM WSI; anything OpenSlide or tiffslide reads).")],
    out: Annotated[Path, typer.Option(help="Output folder; each slide writes into OUT/<slide name>/.")],
    mpp: Annotated[float | None, typer.Option(help="Slide µm per level-0 pixel (overrides its metadata; needed "
                                                   "when the slide has none).")] = None,
    model_mpp: Annotated[float | None, typer.Option(help="µm per model-input pixel (overrides the bundle's "
                                                         "recipe data.mpp; needed when the bundle has none).")] = None,
    min_tissue: Annotated[float, typer.Option(help="Least share of a tile covered by tissue for it to be "
                                                   "predicted (0-1).")] = 0.5,
    tissue_method: Annotated[str, typer.Option(help="Tissue detection: 'saturation' (Otsu on HSV saturation) or "
                                                    "'od' (Otsu on optical density).")] = "saturation",
    region: Annotated[str | None, typer.Option(help="Only this level-0 region x,y,w,h (segmentation: the "
                                                    "nuclei region; default all tissue).")] = None,
    batch_size: Annotated[int, typer.Option(help="Tiles per forward pass.")] = 32,
    workers: Annotated[int, typer.Option(help="DataLoader worker processes reading regions.")] = 2,
    top_k: Annotated[int, typer.Option(help="summary.json reports the mean of the top-k tile probabilities.")] = 10,
    block: Annotated[int, typer.Option(help="Segmentation: block edge in model pixels (predicted with a halo; "
                                            "nuclei on block borders are kept once).")] = 2048,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run: finished tiles/blocks are "
                                              "skipped.")] = False,
    cam: Annotated[bool, typer.Option(help="Classifiers: also stitch the Grad-CAM of tiles over the threshold "
                                           "into cam.npy and cam.png.")] = False,
    device: Annotated[str | None, typer.Option(help="torch device (default: cuda when present, else cpu).")] = None,
) -> None:
    """Run BUNDLE over whole slides. Classifiers: tissue tiles at the bundle's scale → tiles.csv,
    heatmap.tif/.npy, overlay.png, summary.json and slide.geojson (tiles as QuPath detections,
    regions over the bundle threshold as annotations). Segmenters: nuclei.geojson + nuclei.csv."""
    from medattn.bundle import load_bundle
    from medattn.errors import ConfigError, DataError
    from medattn.infer.slide import SlideOptions, run_slide

    if batch_size < 1 or workers < 0 or top_k < 1:
        raise ConfigError("--batch-size and --top-k must be >= 1 and --workers >= 0")
    pred = load_bundle(bundle, device=device)
    failed: list[str] = []
    for s in slides:
        opts = SlideOptions(out=out / s.stem, mpp=mpp, model_mpp=model_mpp, min_tissue=min_tissue,
                            tissue_method=tissue_method, batch_size=batch_size, workers=workers, resume=resume,
                            top_k=top_k, region=_region(region), block=block, cam=cam, progress=Progress(s.name))
        try:
            res = run_slide(pred, s, opts)
        except DataError as exc:  # an unreadable slide does not stop the others
            if len(slides) == 1:
                raise
            failed.append(s.name)
            typer.echo(f"error: {exc}", err=True)
            continue
        if res.get("task") == "segmentation":
            typer.echo(f"{s.name}: {res['nuclei']} nuclei in {res['blocks']} blocks -> {opts.out / 'nuclei.geojson'} "
                       f"({res['timings']['total_s']:.1f}s)")
        else:
            typer.echo(f"{s.name}: {res['tiles_predicted']} tissue tiles, {res['positive_tiles']} over "
                       f"{res['threshold']:.3g} ({100 * res['positive_fraction']:.1f}%), max "
                       f"{res['max_probability'] if res['max_probability'] is not None else float('nan'):.3f} -> "
                       f"{opts.out} ({res['timings']['total_s']:.1f}s)")
    if failed:
        raise DataError(f"{len(failed)} of {len(slides)} slides could not be read: {', '.join(failed)}")


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    app.command("predict")(predict)
    app.command("slide")(slide)
