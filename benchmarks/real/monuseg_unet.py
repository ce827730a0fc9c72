"""MoNuSeg nuclei: residual U-Net (3-class head) with skip attention none / ag / gct / srm.

Run from the repo root::

    .venv/bin/python benchmarks/real/monuseg_unet.py --variants none,ag

Split by image (13 images: 8 train / 2 valid / 3 test, ``make_split`` seed 0). Training samples
random 256×256 crops (flips, 90° rotations, light colour jitter) from the training images; the
loss is cross-entropy + soft Dice on background / interior / boundary (``SegmentationTask``);
the best epoch by validation Dice is kept. Test images are segmented whole (1000×1000) by
sliding-window inference (256 windows, 64 px overlap, averaged softmax), then turned into
instances with ``medattn.metrics.postprocess`` (3-class seeds grown by watershed); the
post-processing setting is chosen on the validation images (AJI), never on test. Dice, AJI, PQ
come from ``medattn.metrics``; CIs resample test images (only 3, so they are wide).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    RUNS,
    Clock,
    attach_recipe,
    command_line,
    dump_json,
    engine_recipe,
    fmt,
    fmt_ci,
    load_json,
    machine_note,
    md_table,
    require_data,
    setup_torch,
    write_section,
)

STUDY = "monuseg_unet"
VARIANTS = ("none", "ag", "gct", "srm")
PEER = {"dice": 0.754, "aji": 0.510, "pq": 0.409}
TARGETS = {"dice": 0.78, "aji": 0.55, "pq": 0.50}
CLASSES = ["background", "interior", "boundary"]  # the engine's names for the 3-class head


class RandomCrops(Dataset):
    """``n`` random crops per epoch from in-memory images (augmentation drawn at every call)."""

    def __init__(self, images: list[torch.Tensor], masks: list[torch.Tensor], n: int, transform: Any) -> None:
        self.images, self.masks, self.n, self.transform = images, masks, n, transform

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        k = int(torch.randint(0, len(self.images), ()).item())
        return self.transform(self.images[k], self.masks[k])


class Whole(Dataset):
    """Whole images, normalised, with their masks (validation)."""

    def __init__(self, images: list[torch.Tensor], masks: list[torch.Tensor], norm: Any) -> None:
        self.images, self.masks, self.norm = images, masks, norm

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.norm(self.images[i]), self.masks[i].long()


def load_pairs(root: Path, table: Any) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    from medattn.data.images import read_image, read_mask

    imgs, masks = [], []
    for row in table.itertuples():
        imgs.append(torch.from_numpy(read_image(root / row.file).transpose(2, 0, 1).copy()))
        masks.append(torch.from_numpy(read_mask(root / row.mask).astype(np.int64)))
    return imgs, masks


def score(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    from medattn.metrics.instance import instance_metrics
    from medattn.metrics.segmentation import dice

    im = instance_metrics(true, pred)
    return {"dice": dice(true > 0, pred > 0), "aji": im["aji"], "pq": im["pq"], "dq": im["dq"], "sq": im["sq"],
            "n_true": im["n_true"], "n_pred": im["n_pred"]}


def run_variant(root: Path, data: dict[str, Any], variant: str, args: argparse.Namespace,
                split_hash: str) -> dict[str, Any]:
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from torchvision.transforms import v2

    from medattn.bundle import save_bundle
    from medattn.data.transforms import (
        IMAGENET_MEAN,
        IMAGENET_STD,
        HEDJitter,
        PairedTransform,
        RandomRot90,
    )
    from medattn.engine.history import HistoryCSV
    from medattn.infer.tiling import sliding_window_probs
    from medattn.engine.seg_task import SegmentationTask
    from medattn.metrics.postprocess import choose_postprocess, instances_from_output
    from medattn.models import create_model

    out = RUNS / STUDY / variant
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    L.seed_everything(args.seed, workers=True, verbose=False)
    norm = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(IMAGENET_MEAN), list(IMAGENET_STD))])
    train_tf = PairedTransform(v2.Compose([
        v2.RandomCrop(args.crop), v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(), RandomRot90(),
        v2.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1, hue=0.03),
        v2.ToDtype(torch.float32, scale=True), *([HEDJitter(args.hed, args.hed / 2)] if args.hed > 0 else []),
        v2.Normalize(list(IMAGENET_MEAN), list(IMAGENET_STD)),
    ]))
    train_ds = RandomCrops(*data["train"], n=args.steps * args.batch_size, transform=train_tf)
    val_ds = Whole(*data["valid"], norm=norm)
    model = create_model("unet", num_classes=3, head="3class", width=args.width, depth=4, skip_attention=variant)
    task = SegmentationTask(model, seg_target="three_class", optimizer="adam", lr=args.lr, weight_decay=1e-5,
                            scheduler=args.scheduler, scheduler_kwargs={"min_lr": args.lr / 50},
                            monitor="val_dice")
    ckpt = ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor="val_dice", mode="max",
                           save_top_k=1, enable_version_counter=False)
    history = HistoryCSV(out / "training_history.csv")
    trainer = L.Trainer(max_epochs=args.epochs, accelerator="cpu", devices=1, logger=False,
                        callbacks=[ckpt, history], enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, default_root_dir=str(out))
    g = torch.Generator().manual_seed(args.seed)
    trainer.fit(task, DataLoader(train_ds, batch_size=args.batch_size, shuffle=True, generator=g),
                DataLoader(val_ds, batch_size=1))
    best = copy.deepcopy(model)
    state = torch.load(ckpt.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
    best.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    best.eval()
    t_train = time.time() - t0
    # post-processing chosen on validation images (mean AJI), then applied unchanged to test
    def infer(im: torch.Tensor) -> np.ndarray:
        return sliding_window_probs(best, norm(im), args.crop, args.overlap, tta=args.tta)

    val_probs = [infer(im) for im in data["valid"][0]]
    setting, val_aji, _ = choose_postprocess(val_probs, [m.numpy() for m in data["valid"][1]])
    per_image = []
    for name, im, m in zip(data["test_names"], *data["test"], strict=True):
        per_image.append({"image": name, **score(m.numpy(), instances_from_output(infer(im), setting))})
    from medattn.metrics import bootstrap_ci

    keys = ("dice", "aji", "pq")
    vals = {k: np.array([r[k] for r in per_image]) for k in keys}
    ci = bootstrap_ci(lambda i: {k: float(vals[k][i].mean()) for k in keys}, len(per_image),
                      n_boot=args.n_boot, seed=args.seed)
    save_bundle(best, {
        "task": "segmentation", "class_names": CLASSES, "input_size": 1000, "in_chans": 3,
        "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "threshold": 0.5,
        "tile_size": args.crop, "tile_overlap": args.overlap, "tta": args.tta, "postprocess": setting,
        "metrics": ci,
        "split_hash": split_hash,
        "recipe": {"study": STUDY, "variant": variant, "width": args.width, "epochs": args.epochs,
                   "steps": args.steps, "batch_size": args.batch_size, "crop": args.crop, "lr": args.lr,
                   "seed": args.seed},
    }, out / "bundle")
    result = {"variant": variant, "metrics": ci, "per_image": per_image, "postprocess": setting,
              "val_aji": val_aji, "best_val_dice": float(ckpt.best_model_score or float("nan")),
              "epochs_run": trainer.current_epoch, "train_minutes": t_train / 60,
              "total_minutes": (time.time() - t0) / 60, "command": command_line(), "seed": args.seed,
              "config": vars(args), "images": {s: len(data[s][0]) for s in ("train", "valid", "test")}}
    dump_json(out / "result.json", result)
    print(f"[{variant}] Dice {fmt_ci(ci['dice'])} AJI {fmt_ci(ci['aji'])} PQ {fmt_ci(ci['pq'])} "
          f"({result['total_minutes']:.1f} min)", flush=True)
    return result


def build_section(results: list[dict[str, Any]], test_names: list[str]) -> str:
    cmds = sorted({r["command"] for r in results})
    rows = [[r["variant"], fmt_ci(r["metrics"]["dice"]), fmt_ci(r["metrics"]["aji"]), fmt_ci(r["metrics"]["pq"]),
             fmt(r["best_val_dice"]), str(r["postprocess"]).replace("'", ""), r["epochs_run"],
             f"{r['total_minutes']:.1f}"] for r in results]
    per = [[r["variant"], p["image"], fmt(p["dice"]), fmt(p["aji"]), fmt(p["pq"]), p["n_true"], p["n_pred"]]
           for r in results for p in r["per_image"]]
    cfg = results[0]["config"] if results else {}
    wall = sum(r["total_minutes"] for r in results)
    verdict = []
    for r in results:
        m = r["metrics"]
        met = [k for k, t in TARGETS.items() if m[k]["value"] >= t]
        beat = [k for k, t in PEER.items() if m[k]["value"] > t]
        verdict.append(f"- `{r['variant']}`: targets met for {', '.join(met) or 'none'} "
                       f"(Dice ≥ 0.78, AJI ≥ 0.55, PQ ≥ 0.50); point estimate above the peer for "
                       f"{', '.join(beat) or 'none'} (0.754 / 0.510 / 0.409).")
    return "\n".join([
        "## Nuclei instance segmentation (`monuseg_train_subset`, 13 images, 4,949 nuclei)",
        "",
        "Command: `.venv/bin/python benchmarks/real/monuseg_unet.py` (finished variants are read back "
        "from `runs/real/monuseg_unet/*/result.json`).",
        "Runs in this table were produced by: " + "; ".join(f"`{c}`" for c in cmds) + ".",
        "",
        f"Split by image (`make_split`, seed 0): {cfg.get('n_train', 8)} train / 2 valid / 3 test; test images: "
        + ", ".join(f"`{n}`" for n in test_names) + ". "
        f"Residual U-Net (`unet`, width {cfg.get('width')}, depth 4, 3-class head background/interior/boundary), "
        f"{cfg.get('epochs')} epochs × {cfg.get('steps')} steps of {cfg.get('batch_size')} random "
        f"{cfg.get('crop')}² crops (flips, 90° rotations, colour jitter"
        + (f", HED stain jitter ±{cfg['hed']:g}" if cfg.get("hed") else "") + f"), Adam {cfg.get('lr')}"
        + (f" with a {cfg['scheduler']} schedule" if cfg.get("scheduler", "none") != "none" else "")
        + ", CE + soft Dice; best epoch by validation Dice. "
        f"Whole 1000×1000 test images by sliding window (`medattn.infer.tiling`, {cfg.get('crop')} px tiles, "
        f"overlap {cfg.get('overlap')}" + (", mean over 4 flips" if cfg.get("tta") else "") + "); "
        "instances by `medattn.metrics.postprocess`: the setting of `POSTPROCESS_GRID` (3-class seeds at several "
        "thresholds, distance-transform watershed, connected components; several minimum sizes) with the best "
        "mean validation AJI (`choose_postprocess`). "
        "Metrics: mean over test images; 95% CIs resample the 3 test images (very wide by construction).",
        "",
        md_table(["skip attention", "Dice [95% CI]", "AJI [95% CI]", "PQ [95% CI]", "best val Dice",
                  "post-processing (chosen on valid)", "epochs", "minutes"], rows),
        "",
        "Per test image:",
        "",
        md_table(["skip attention", "image", "Dice", "AJI", "PQ", "true nuclei", "predicted"], per),
        "",
        "Against the targets (the peer ran on other held-out MoNuSeg images, so this is indicative):",
        "",
        *verdict,
        "",
        f"Wall time: {wall:.1f} min for the runs above (sum of per-variant train + evaluate times), on "
        f"{machine_note()}. Seed 0.",
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", default="none,ag")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--steps", type=int, default=30, help="training batches per epoch")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--overlap", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--scheduler", default="cosine", choices=["none", "cosine", "onecycle"])
    ap.add_argument("--hed", type=float, default=0.05, help="HED stain jitter range (0 = off)")
    ap.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True,
                    help="average flipped predictions at inference")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--retrain", action="store_true")
    args = ap.parse_args(argv)
    root = require_data("monuseg_train_subset")
    setup_torch()
    from medattn.data.formats import scan_seg_pairs
    from medattn.data.splits import make_split, write_split_csv

    clock = Clock()
    table = scan_seg_pairs(root, "images", "instance_masks")
    split = make_split(table, ratios=(0.6, 0.15, 0.25), seed=args.seed, resolution=len(table))
    (RUNS / STUDY).mkdir(parents=True, exist_ok=True)
    write_split_csv(split, RUNS / STUDY / "split.csv")
    split_hash = hashlib.sha256((RUNS / STUDY / "split.csv").read_bytes()).hexdigest()
    data: dict[str, Any] = {}
    for s in ("train", "valid", "test"):
        data[s] = load_pairs(root, table[split["split"].to_numpy() == s])
    data["test_names"] = [Path(f).stem for f in table.loc[split["split"].to_numpy() == "test", "file"]]
    args.n_train = len(data["train"][0])
    for v in args.variants.split(","):
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant '{v}'; choose from {', '.join(VARIANTS)}")
        if (RUNS / STUDY / v / "result.json").is_file() and not args.retrain:
            print(f"[{v}] cached")
            continue
        run_variant(root, data, v, args, split_hash)
    results = [load_json(p) for v in VARIANTS if (p := RUNS / STUDY / v / "result.json").is_file()]
    for r in results:
        c = r["config"]
        rec = engine_recipe("oral-unet-none", {
            "name": f"bench-monuseg-unet-{r['variant']}", "data.image_size": c["crop"], "data.num_workers": 0,
            "model.args": {"skip_attention": r["variant"], "depth": 4, "width": c["width"], "head": "3class"},
            "optimizer": {"name": "adam", "lr": c["lr"], "weight_decay": 1e-5}, "trainer.max_epochs": c["epochs"],
            "trainer.batch_size": c["batch_size"], "data.split": {"val_fraction": 0.15, "test_fraction": 0.25,
                                                                  "seed": args.seed},
            "evaluation.postprocess": r["postprocess"], "evaluation.tile_size": c["crop"],
            "evaluation.tile_overlap": c["overlap"], "evaluation.tta": bool(c.get("tta", False))})
        if attach_recipe(RUNS / STUDY / r["variant"] / "bundle", rec, class_names=CLASSES):
            print(f"attached the engine recipe to the {r['variant']} bundle")
    if results:
        write_section(STUDY, build_section(results, data["test_names"]),
                      {"results": results, "elapsed_this_invocation_minutes": clock.minutes()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
