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
) -> None:
    """Predict images with BUNDLE: predictions.csv (classification) or instance masks, per-object CSV
    and QuPath GeoJSON (segmentation), written as they come (--resume continues)."""
    from medattn.bundle import load_bundle
    from medattn.infer.predict import PredictOptions, run_predict

    pred = load_bundle(bundle, device=device, max_pixels=int(max_megapixels * 1e6))
    opts = PredictOptions(out=out, resume=resume, on_bad_file=on_bad_file, tile=tile, batch_size=batch_size,
                          progress=Progress("predict"))
    res = run_predict(pred, inputs, opts)
    typer.echo(f"wrote {res['predictions']}: {res['n_done']} predicted ({res['n_new']} new"
               + (f", {res['n_tiled']} tiled" if res["n_tiled"] else "") + f"), {res['n_bad']} unreadable"
               + (f" (listed in {out / 'bad_files.csv'})" if res["n_bad"] else "") + f", {res['seconds']:.1f}s")


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    app.command("predict")(predict)
