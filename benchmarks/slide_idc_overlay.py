"""Benchmark: an assembled IDC slide through ``medattn slide`` — does stitching keep the AUROC?

One patient's real 50×50 IDC patches (``../shared/data/breast_idc``) are put back at the x, y of
their names into an Aperio-style pyramid (4 µm/px). The shipped ``idc-cpu`` recipe is trained (the
one training path, ``medattn train``) for a few epochs on the *other* patients' patches, then its
bundle (a) scores the patient's patch files directly and (b) runs through ``medattn slide`` on the
assembled slide. The AUROC of the stitched heatmap at the patch
positions should equal the patch AUROC. Writes ``overlay_vs_truth.png`` (heatmap overlay beside the
true tumour tiles) under ``--out`` and its section of docs/benchmarks.md. Skips without the data.

    .venv/bin/python benchmarks/slide_idc_overlay.py [--patient 10273] [--epochs 3] [--out runs/slide_idc]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import replace_section  # noqa: E402

HEADING = "## Whole slides: assembled IDC slide, heatmap AUROC vs patch AUROC (slide_idc_overlay.py)"
DATA = ROOT.parent / "shared" / "data" / "breast_idc"


def _train(patient: str, epochs: int, out: Path) -> Path:
    """Train the shipped ``idc-cpu`` recipe (the one training path) on every patient but ``patient``
    (a folder of links to the other patients' folders), as a final model; returns its bundle."""
    from medattn.engine.runner import train_run

    others = out / "train_data"
    if others.exists():
        import shutil

        shutil.rmtree(others)
    others.mkdir(parents=True)
    for d in sorted((DATA / "images").iterdir()):
        if d.is_dir() and d.name != patient:
            (others / d.name).symlink_to(d.resolve(), target_is_directory=True)
    run = out / "run"
    if not (run / "bundle" / "bundle.json").is_file():
        train_run("idc-cpu", out=run, data=others,
                  overrides=[f"trainer.max_epochs={epochs}", "data.split.test_fraction=0", "evaluation.n_boot=100"])
    return run / "bundle"


def _figure(overlay: Path, grid: np.ndarray, truth: list[dict], text: str, out: Path) -> None:
    from PIL import Image, ImageDraw

    ov = Image.open(overlay).convert("RGB")
    tm = np.full((*grid.shape, 3), 242, np.uint8)
    for t in truth:
        tm[t["y"] // 50, t["x"] // 50] = (200, 0, 0) if t["label"] else (0, 150, 0)
    w = ov.size[0] - 80
    tim = Image.fromarray(tm).resize((w, int(w * grid.shape[0] / grid.shape[1])), Image.Resampling.NEAREST)
    canvas = Image.new("RGB", (ov.size[0] + w + 20, max(ov.size[1], tim.size[1] + 22)), "white")
    canvas.paste(ov, (0, 0))
    canvas.paste(tim, (ov.size[0] + 10, 22))
    ImageDraw.Draw(canvas).text((ov.size[0] + 14, 4), text, fill="black")
    canvas.save(out)


def main() -> int:
    from sklearn.metrics import roc_auc_score

    from medattn.bundle import load_bundle
    from medattn.infer.slide import SlideOptions, run_slide
    from medattn.infer.testslides import assemble_idc_slide

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patient", default="10273")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "slide_idc")
    args = ap.parse_args()
    if not (DATA / "labels.csv").is_file():
        print(f"skipped: {DATA} is absent")
        return 0
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    rows = list(csv.DictReader(open(DATA / "labels.csv", encoding="utf-8")))
    files = {p.name: p for p in DATA.rglob("*.png")}
    train = [r for r in rows if r["patient_id"] != args.patient]
    args.out.mkdir(parents=True, exist_ok=True)
    pred = load_bundle(_train(args.patient, args.epochs, args.out))
    slide, truth = assemble_idc_slide(DATA, args.patient, args.out / f"idc_{args.patient}.svs", mpp=4.0)
    s = run_slide(pred, slide, SlideOptions(out=args.out / "slide", workers=1, min_tissue=0.2))
    grid = np.load(args.out / "slide" / "heatmap.npy")
    full = [t for t in truth if (t["w"], t["h"]) == (50, 50)]
    cov = [t for t in full if np.isfinite(grid[t["y"] // 50, t["x"] // 50])]
    y = np.array([t["label"] for t in cov])
    slide_auc = roc_auc_score(y, [grid[t["y"] // 50, t["x"] // 50] for t in cov])
    patch_auc = roc_auc_score(y, [pred.infer([files[t["file"]]], trust=False)[0]["probabilities"]["IDC"]
                                  for t in cov])
    fig = args.out / "overlay_vs_truth.png"
    _figure(args.out / "slide" / "overlay.png", grid, full,
            f"truth: IDC (red) / non-IDC (green); slide AUROC {slide_auc:.3f}, patch AUROC {patch_auc:.3f}", fig)
    section = f"""{HEADING}

Command: `.venv/bin/python benchmarks/slide_idc_overlay.py --patient {args.patient} --epochs {args.epochs}`
({time.perf_counter() - t0:.0f} s, CPU, {args.threads} thread). Patient {args.patient}'s {len(full)} full 50×50 patches
({sum(t['label'] for t in full)} IDC) assembled into a {s['dimensions'][0]}×{s['dimensions'][1]} px Aperio pyramid at 4 µm/px; a
bundle of the `idc-cpu` recipe (ResNet-18, 50 px) trained {args.epochs} epochs on the other
{len({r['patient_id'] for r in train})} patients' {len(train)} patches (`medattn train idc-cpu --set
trainer.max_epochs={args.epochs} --set data.split.test_fraction=0`). `medattn slide` found tissue in {len(cov)} of the {len(full)} patch positions
(very pale, fatty patches are glass to Otsu) and predicted {s['tiles_predicted']} tiles in {s['timings']['total_s']:.1f} s.

| on the same {len(cov)} patches | AUROC |
|---|---|
| patch files scored directly (`Predictor.infer`) | {patch_auc:.3f} |
| stitched slide heatmap at the patch positions | {slide_auc:.3f} |

The figure (`{fig.relative_to(ROOT) if fig.is_relative_to(ROOT) else fig}`, not committed: it shows patient data) puts
`overlay.png` beside the true tumour tiles.
"""
    replace_section(HEADING, section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
