"""Explanations on real images: do an IDC classifier's CAMs and CBAM maps land on nuclei?

Run from the repo root (after ``cpu_recipes.py --study idc --final`` has trained the ``idc-cpu``
final model, or with ``--bundle`` naming any binary IDC bundle with CBAM)::

    .venv/bin/python benchmarks/real/explanations.py

The IDC bundle (ResNet-18 with CBAM in every block for ``idc-cpu``) is applied to the 13
MoNuSeg images (never seen in training), down-sampled 4× and cut into 50×50 tiles. For every tile
that contains nuclei we score, against the nuclei mask: Grad-CAM and Grad-CAM++ (IDC logit,
``medattn.explain.compute_cams``), the model's own last and product-of-stages CBAM spatial maps
(``medattn.explain.attention_maps``), and two baselines that look nowhere in particular (centre
Gaussian, uniform noise). Metrics: energy in mask and pointing game
(``medattn.explain.faithfulness``); the nuclei share of the tile area is the chance level of
energy in mask. CIs resample the 13 images.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    REPO,
    RUNS,
    command_line,
    fmt_ci,
    machine_note,
    md_table,
    require_data,
    setup_torch,
    write_section,
)

STUDY = "explanations"
BUNDLE = RUNS / "cpu" / "idc" / "idc-cpu-final" / "bundle"  # cpu_recipes.py --study idc --final


def tiles(root: Path, factor: int, size: int) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    from medattn.data.images import read_image, read_mask

    imgs, masks, groups = [], [], []
    for p in sorted((root / "images").glob("*.png")):
        im = read_image(p)
        m = read_mask(root / "instance_masks" / p.name) > 0
        h, w = (im.shape[0] // factor) * factor, (im.shape[1] // factor) * factor
        small = im[:h, :w].reshape(h // factor, factor, w // factor, factor, 3).mean((1, 3)).astype(np.uint8)
        msmall = m[:h, :w].reshape(h // factor, factor, w // factor, factor).mean((1, 3)) >= 0.5
        for y in range(0, small.shape[0] - size + 1, size):
            for x in range(0, small.shape[1] - size + 1, size):
                mk = msmall[y:y + size, x:x + size]
                if mk.any():
                    imgs.append(small[y:y + size, x:x + size])
                    masks.append(mk)
                    groups.append(p.stem)
    return imgs, masks, groups


def add_baselines(maps: dict[str, np.ndarray], h: int, w: int, n: int, seed: int) -> None:
    """Maps that look nowhere in particular: the chance levels of the scores."""
    from medattn.explain.faithfulness import centre_gaussian_map, random_map

    rng = np.random.default_rng(seed)
    maps["baseline: centre Gaussian"] = np.stack([centre_gaussian_map(h, w)] * n)
    maps["baseline: uniform noise"] = np.stack([random_map(h, w, rng) for _ in range(n)])


def score_maps(maps: dict[str, np.ndarray], m: np.ndarray, groups: np.ndarray, n_boot: int,
               seed: int) -> tuple[dict[str, Any], list[list[str]]]:
    """Energy in mask, lift over the mask's area share and pointing game, CIs resampling ``groups``."""
    from medattn.explain.faithfulness import energy_in_mask, pointing_game
    from medattn.metrics import bootstrap_ci

    area = m.reshape(len(m), -1).mean(1)
    rows, numbers = [], {}
    for name, mp in maps.items():
        en = np.array([energy_in_mask(mp[i], m[i]) for i in range(len(m))])
        pg = np.array([pointing_game(mp[i], m[i]) for i in range(len(m))])
        ci = bootstrap_ci(lambda i, en=en, pg=pg: {"energy": float(en[i].mean()), "lift": float((en[i] / area[i]).mean()),
                                                   "pointing": float(pg[i].mean())},
                          len(m), groups, n_boot, seed=seed)
        numbers[name] = ci
        rows.append([name, fmt_ci(ci["energy"]), fmt_ci(ci["lift"]), fmt_ci(ci["pointing"])])
    return numbers, rows


def train_synthetic(name: str, data: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Train one demo recipe (``medattn demo``'s sizes and overrides) into ``out`` with
    ``medattn train``'s code; a finished run is reused unless ``--retrain``."""
    import shutil

    from medattn.demo import DemoConfig, demo_recipe
    from medattn.engine.runner import train_run

    if (out / "summary.json").is_file() and not args.retrain:
        return json.loads((out / "summary.json").read_text())
    if out.exists():
        shutil.rmtree(out)
    cfg = DemoConfig(seed=args.seed, n_boot=args.n_boot, progress=False)
    return train_run(demo_recipe(name, cfg, data), out=out)


def synthetic_study(args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    """Baseline and CBAM patch CNNs trained on SynthPCam; maps scored against the lesion masks."""
    import h5py
    import pandas as pd

    from medattn.bundle import load_bundle
    from medattn.data.formats.pcam_h5 import pcam_files
    from medattn.data.synthetic import write_pcam
    from medattn.demo import DEMO_RECIPES, DemoConfig
    from medattn.explain import attention_maps, compute_cams
    from medattn.explain.attention_maps import spatial_maps

    base = RUNS / STUDY / "synthpcam"
    dcfg = DemoConfig()
    sizes = {"train": dcfg.n_train, "valid": dcfg.n_valid, "test": dcfg.n_test}
    data = write_pcam(base / "data", sizes, seed=args.seed)
    files = pcam_files(data, "test")
    with h5py.File(files["y"], "r") as f:
        pos = np.nonzero(np.asarray(f["y"]).reshape(-1) == 1)[0][:args.n_synth]
    with h5py.File(files["mask"], "r") as f:
        m = np.asarray(f["mask"][pos]).astype(bool)
    with h5py.File(files["x"], "r") as f:
        raw = np.asarray(f["x"][pos])
    groups = pd.read_csv(files["meta"])["wsi"].astype(str).to_numpy()[pos]
    keep = m.reshape(len(m), -1).any(1)
    maps: dict[str, np.ndarray] = {}
    aurocs = {}
    for name, recipe in DEMO_RECIPES.items():
        summary = train_synthetic(name, data, base / name, args)
        aurocs[name] = summary["metrics"]["auroc"]
        pred = load_bundle(base / name / "bundle", device="cpu")
        best, x = pred.model, pred.preprocess(list(raw))
        short = "baseline" if recipe.endswith("baseline") else "CBAM"
        maps[f"{short} CNN: Grad-CAM"] = compute_cams(best, x, method="gradcam")
        maps[f"{short} CNN: Grad-CAM++"] = compute_cams(best, x, method="gradcam++")
        if short == "CBAM":
            nat = attention_maps(best, x)
            for label, comb in (("last stage", "last"), ("product of stages", "product")):
                sm = spatial_maps(nat, comb)
                if sm is not None:
                    maps[f"CBAM CNN: native spatial map ({label})"] = sm
    add_baselines(maps, m.shape[1], m.shape[2], len(m), args.seed)
    maps = {k: v[keep] for k, v in maps.items()}
    numbers, rows = score_maps(maps, m[keep], groups[keep], args.n_boot, args.seed)
    area = m[keep].reshape(int(keep.sum()), -1).mean(1)
    md = [
        "### The same scores against known lesion masks (SynthPCam)",
        "",
        f"Recipes `pcam-baseline` and `pcam-attention` with `medattn demo`'s overrides (width {dcfg.width}, "
        f"≤{dcfg.epochs} epochs, lr {dcfg.lr}) trained by `medattn train`'s code on SynthPCam "
        f"({sizes['train']}/{sizes['valid']}/{sizes['test']} patches, seed {args.seed}; run folders "
        f"`{base.relative_to(REPO) if base.is_relative_to(REPO) else base}/<model>`); "
        f"test AUROC baseline {aurocs['patch_cnn_baseline']:.3f}, "
        f"CBAM {aurocs['patch_cnn_attention']:.3f}); maps of the first {int(keep.sum())} positive test patches "
        f"scored against their tumour masks (mean lesion share of a patch {area.mean():.3f}); CIs resample slides.",
        "",
        md_table(["map", "energy in lesion [95% CI]", "lift over area [95% CI]", "pointing game [95% CI]"], rows),
        "",
    ]
    return md, {"maps": numbers, "test_auroc": aurocs, "n": int(keep.sum()), "mean_area": float(area.mean())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--factor", type=int, default=4)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-synth", type=int, default=128, help="positive SynthPCam test patches scored")
    ap.add_argument("--synthetic", action=argparse.BooleanOptionalAction, default=True,
                    help="also train on SynthPCam and score the maps against its lesion masks")
    ap.add_argument("--retrain", action="store_true", help="replace finished SynthPCam runs instead of reusing them")
    ap.add_argument("--bundle", type=Path, default=BUNDLE, help="binary IDC bundle whose maps are scored on MoNuSeg")
    args = ap.parse_args(argv)
    root = require_data("monuseg_train_subset")
    if not args.bundle.is_dir():
        print(f"SKIP: {args.bundle} not found; run benchmarks/real/cpu_recipes.py --study idc --final first.")
        return 0
    setup_torch()
    import torch

    from medattn.bundle import load_bundle
    from medattn.explain import attention_maps, compute_cams
    from medattn.explain.attention_maps import spatial_maps

    t0 = time.time()
    pred = load_bundle(args.bundle, device="cpu")
    arch = pred.meta.get("architecture", {}).get("name", "?")
    size = pred.input_hw[0]
    imgs, masks, groups = tiles(root, args.factor, size)
    x = pred.preprocess(imgs)
    with torch.no_grad():
        p_idc = torch.sigmoid(pred.model(x).float()).reshape(-1).numpy()
    maps = {"Grad-CAM": compute_cams(pred.model, x, method="gradcam"),
            "Grad-CAM++": compute_cams(pred.model, x, method="gradcam++")}
    nat = attention_maps(pred.model, x)
    for name, comb in (("CBAM spatial (last stage)", "last"), ("CBAM spatial (product of stages)", "product")):
        sm = spatial_maps(nat, comb)
        if sm is not None:
            maps[name] = sm
    add_baselines(maps, size, size, len(imgs), args.seed)
    m = np.stack(masks)
    area = m.reshape(len(m), -1).mean(1)
    numbers, rows = score_maps(maps, m, np.asarray(groups), args.n_boot, args.seed)
    synth_md, synth_numbers = synthetic_study(args) if args.synthetic else ([], {})
    wall = (time.time() - t0) / 60
    md = "\n".join([
        "## Explanations: do CAMs and attention maps land on nuclei and lesions? (MoNuSeg masks, SynthPCam masks)",
        "",
        "Command: `.venv/bin/python benchmarks/real/explanations.py` (this run: "
        f"`{command_line()}`).",
        "",
        f"Model: the IDC bundle `{args.bundle.name if args.bundle != BUNDLE else 'idc-cpu-final/bundle'}` "
        f"(`{arch}`). Data: the 13 MoNuSeg images "
        f"down-sampled {args.factor}× and cut into {size}×{size} tiles; {len(m)} tiles with nuclei "
        f"(mean nuclei share of a tile {area.mean():.3f}, mean predicted P(IDC) {p_idc.mean():.3f}). "
        "Energy in mask: share of the map's mass on nuclei; lift: energy / nuclei area share (1 = chance); "
        "pointing game: the map's peak on a nucleus. 95% CIs resample the 13 images. Caveat: IDC patches "
        "come from a lower magnification than MoNuSeg, so the tiles are only roughly in-domain.",
        "",
        md_table(["map", "energy in nuclei [95% CI]", "lift over area [95% CI]", "pointing game [95% CI]"], rows),
        "",
        *synth_md,
        f"Wall time: {wall:.1f} min for both parts (the synthetic part trains two small CNNs), on "
        f"{machine_note()}. Seed {args.seed}.",
    ])
    write_section(STUDY, md, {"maps": numbers, "n_tiles": len(m), "mean_area": float(area.mean()),
                              "mean_p_idc": float(p_idc.mean()), "synthetic": synth_numbers})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
