"""Herlev cells as ordered grades, and segment-then-classify on real cells.

Run from the repo root::

    .venv/bin/python benchmarks/real/herlev_grade.py [--epochs 12] [--size 96]

1. ``recipes/oral-grade-resnet.yaml`` (CBAM ResNet-18, ordinal evaluation) trained on the 7 Herlev
   classes taken as grades, from normal superficial to carcinoma in situ; reports accuracy, macro
   F1, quadratic-weighted kappa and the rest with 95% CIs, plus the 2-class abnormal view.
2. Herlev has no masks, so the segmenter learns pseudo-masks: Otsu's threshold on the grey image
   (the cell is darker than the slide background), largest component, holes filled — made for
   the grade run's *training* images only. A small U-Net (``oral-unet-none``) is trained on them.
3. The chained pipeline (U-Net → emphasis → the same classifier, trained on untouched images) is
   compared with the classifier alone on the same test items by a paired bootstrap, for each
   emphasis mode.

Pseudo-mask pairs are symlinks to the shared images (nothing is copied) under ``runs/real``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    RUNS,
    Clock,
    command_line,
    fmt,
    fmt_ci,
    load_json,
    machine_note,
    md_table,
    require_data,
    setup_torch,
    write_section,
)

STUDY = "herlev_grade"
GRADES = ["normal_superficiel", "normal_intermediate", "normal_columnar", "light_dysplastic",
          "moderate_dysplastic", "severe_dysplastic", "carcinoma_in_situ"]
PEER = {"accuracy": 0.569, "sensitivity": 0.889, "specificity": 0.761}


def folder_names(images: Path) -> list[str]:
    """The actual folder of each grade (``normal_columnar_org_98_jpeg`` → ``normal_columnar``)."""
    dirs = {d.name: d.name for d in images.iterdir() if d.is_dir()}
    return [next(d for d in dirs if d.startswith(g)) for g in GRADES]


def pseudo_mask(img: np.ndarray) -> np.ndarray:
    """Cell mask of a Herlev crop: Otsu on grey (dark side), largest component, holes filled."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    g = img.mean(2) if img.ndim == 3 else img.astype(np.float64)
    fg = g < threshold_otsu(g)
    fg = ndimage.binary_opening(fg, iterations=1)
    lab, n = ndimage.label(fg)
    if n:
        fg = lab == (np.bincount(lab.ravel())[1:].argmax() + 1)
    return ndimage.binary_fill_holes(fg).astype(np.uint8)


def write_pseudo_pairs(images: Path, files: list[str], out: Path) -> Path:
    """``out/images/<f>`` (symlinks) and ``out/masks/<stem>.png`` (pseudo-masks) for ``files``."""
    from medattn.data.images import read_image, write_image

    for f in files:
        src = images / f
        link = out / "images" / f
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(src.resolve())
        mask = out / "masks" / Path(f).with_suffix(".png")
        if not mask.is_file():
            write_image(mask, pseudo_mask(read_image(src)))
    return out


def abnormal_view(y: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    """Sensitivity/specificity of 'abnormal' (grades 3–6) from the arg-max grade."""
    t, p = y >= 3, prob.argmax(1) >= 3
    return {"sensitivity": float((p & t).sum() / max(t.sum(), 1)), "specificity": float((~p & ~t).sum() / max((~t).sum(), 1))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--seg-epochs", type=int, default=6)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--retrain", action="store_true")
    args = ap.parse_args()
    images = require_data("herlev_dev") / "images"
    setup_torch(2)
    clock = Clock()
    from medattn.engine.runner import train_run
    from medattn.metrics.bootstrap import bootstrap_ci
    from medattn.pipelines import SegmentClassifyPipeline, evaluate_chain, items_from_run

    base = RUNS / STUDY
    grade, seg = base / "grade", base / "seg"
    names = folder_names(images)
    if args.retrain:  # medattn runs refuse to overwrite a run directory: start both afresh
        import shutil

        for d in (grade, seg):
            shutil.rmtree(d, ignore_errors=True)
    if args.retrain or not (grade / "metrics.json").is_file():
        train_run("oral-grade-resnet", out=grade, data=images, overrides=[
            f"data.class_names={names}", f"data.image_size={args.size}", "data.augment=cytology",
            "data.num_workers=0", f"trainer.max_epochs={args.epochs}", "trainer.early_stopping.patience=5",
            "trainer.progress=false", f"evaluation.n_boot={args.n_boot}",
            "data.options.group_pattern=^(\\d+)-"])  # crops of one source image stay on one side
    test_paths, y, groups = items_from_run(grade, "test")
    split = load_json(grade / "metrics.json")
    train_files = [r.split(",")[0] for r in (grade / "split.csv").read_text().splitlines()[1:] if ",train," in r]
    if args.retrain or not (seg / "bundle" / "bundle.json").is_file():
        pairs = write_pseudo_pairs(images, train_files, base / "pseudo_pairs")
        train_run("oral-unet-none", out=seg, data=pairs, overrides=[
            "task.seg_target=binary", "task.gif_every=0", "data.image_size=64", "data.augment=cytology",
            "data.num_workers=0", "model.args.width=8", "model.args.depth=3", f"trainer.max_epochs={args.seg_epochs}",
            "trainer.batch_size=16", "trainer.progress=false", "evaluation.n_boot=200",
            "data.options.eval_max_size=64"])
    seg_m = load_json(seg / "metrics.json")["metrics"]
    chains: dict[str, Any] = {}
    alone_prob = None
    for mode in ("mask", "dim", "crop"):
        pipe = SegmentClassifyPipeline(seg / "bundle", grade / "bundle", mode=mode, fill=1.0 if mode != "crop" else 0.0)
        doc = evaluate_chain(pipe, [str(p) for p in test_paths], y, n_boot=args.n_boot, seed=0,
                             out_dir=base / f"chain_{mode}")
        chains[mode] = doc["metrics"]
        if alone_prob is None:
            alone_prob = pipe.probabilities([str(p) for p in test_paths])[1]
    ab = bootstrap_ci(lambda i: abnormal_view(y[i], alone_prob[i]), len(y), None, args.n_boot, 0.05, 0)
    m = split["metrics"]
    rows = [[k, fmt_ci(m[k])] for k in ("accuracy", "macro_f1", "qwk", "linear_kappa", "mae_grade", "within_one",
                                         "balanced_accuracy", "macro_auroc")]
    rows += [[f"abnormal {k} (grades 3–6)", fmt_ci(ab[k])] for k in ("sensitivity", "specificity")]
    crow = [[mode, *(f"{fmt(c[k]['value_b'])} ({c[k]['diff']:+.3f} [{c[k]['ci_low']:+.3f}, {c[k]['ci_high']:+.3f}])"
                     for k in ("accuracy", "macro_f1", "qwk"))] for mode, c in chains.items()]
    a0 = next(iter(chains.values()))
    crow.insert(0, ["classifier alone", *(fmt(a0[k]["value_a"]) for k in ("accuracy", "macro_f1", "qwk"))])
    md = f"""## Herlev cells as ordered grades, and segment-then-classify (`herlev_dev`, {len(y)} test cells)

The 7 Herlev classes taken as grades 0–6 ({' < '.join(GRADES)}), recipe `oral-grade-resnet`
(CBAM ResNet-18 from scratch, {args.size} px, {args.epochs} epochs max, early stopping on validation
macro AUROC), split 70/15/15 stratified by class and grouped by source image (first number of the
file name; seed 0). Test metrics with 95% CIs (the engine's metrics resample source images; the
two abnormal-view rows resample cells):

{md_table(["metric", "value [95% CI]"], rows)}

Peer (timm ResNet-18, 128 px, 20 epochs): accuracy {PEER['accuracy']}, abnormal sensitivity
{PEER['sensitivity']}, specificity {PEER['specificity']}.

**Segment-then-classify.** Herlev has no masks: a U-Net (`oral-unet-none`, width 8, 64 px,
{args.seg_epochs} epochs) learnt Otsu pseudo-masks of the training cells (test Dice against the
pseudo-masks {fmt_ci(seg_m['dice'])}). The chain emphasises the predicted cell (mask: background set
to white; dim: background at 30% contrast towards white; crop: box of the largest region + 5%)
and classifies it with the *same* classifier, which was trained on untouched images. Paired
bootstrap on the same {len(y)} test cells, value (chained − alone [95% CI]):

{md_table(["pipeline", "accuracy", "macro F1", "QWK"], crow)}

Command: `{command_line()}`. Wall time: {clock.minutes():.1f} min on {machine_note()}.
"""
    write_section(STUDY, md, {"grade_metrics": m, "abnormal": ab, "chains": chains, "segmenter": seg_m,
                              "n_test": len(y), "args": vars(args)})


if __name__ == "__main__":
    main()
