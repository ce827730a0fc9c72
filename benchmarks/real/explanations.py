"""Explanations on real images: do an IDC classifier's CAMs and CBAM maps land on nuclei?

Run from the repo root (after ``breast_idc.py`` has trained ``patch_cnn_attention``)::

    .venv/bin/python benchmarks/real/explanations.py

The patient-split ``patch_cnn_attention`` bundle (CBAM in every stage) is applied to the 13
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
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
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
BUNDLE = RUNS / "breast_idc" / "patient" / "patch_cnn_attention" / "bundle"


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--factor", type=int, default=4)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    root = require_data("monuseg_train_subset")
    if not BUNDLE.is_dir():
        print(f"SKIP: {BUNDLE} not found; run benchmarks/real/breast_idc.py first.")
        return 0
    setup_torch()
    import torch

    from medattn.bundle import load_bundle
    from medattn.explain import attention_maps, compute_cams
    from medattn.explain.attention_maps import spatial_maps
    from medattn.explain.faithfulness import (
        centre_gaussian_map,
        energy_in_mask,
        pointing_game,
        random_map,
    )
    from medattn.metrics import bootstrap_ci

    t0 = time.time()
    pred = load_bundle(BUNDLE, device="cpu")
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
    rng = np.random.default_rng(args.seed)
    maps["baseline: centre Gaussian"] = np.stack([centre_gaussian_map(size, size)] * len(imgs))
    maps["baseline: uniform noise"] = np.stack([random_map(size, size, rng) for _ in imgs])
    m = np.stack(masks)
    area = m.reshape(len(m), -1).mean(1)
    g = np.asarray(groups)
    rows, numbers = [], {}
    for name, mp in maps.items():
        en = np.array([energy_in_mask(mp[i], m[i]) for i in range(len(m))])
        pg = np.array([pointing_game(mp[i], m[i]) for i in range(len(m))])
        ci = bootstrap_ci(lambda i, en=en, pg=pg: {"energy": float(en[i].mean()), "lift": float((en[i] / area[i]).mean()),
                                                   "pointing": float(pg[i].mean())},
                          len(m), g, args.n_boot, seed=args.seed)
        numbers[name] = ci
        rows.append([name, fmt_ci(ci["energy"]), fmt_ci(ci["lift"]), fmt_ci(ci["pointing"])])
    wall = (time.time() - t0) / 60
    md = "\n".join([
        "## Explanations: does an IDC classifier look at nuclei? (MoNuSeg masks)",
        "",
        "Command: `.venv/bin/python benchmarks/real/explanations.py` (this run: "
        f"`{command_line()}`).",
        "",
        f"Model: the patient-split `patch_cnn_attention` bundle from the IDC study. Data: the 13 MoNuSeg images "
        f"down-sampled {args.factor}× and cut into {size}×{size} tiles; {len(m)} tiles with nuclei "
        f"(mean nuclei share of a tile {area.mean():.3f}, mean predicted P(IDC) {p_idc.mean():.3f}). "
        "Energy in mask: share of the map's mass on nuclei; lift: energy / nuclei area share (1 = chance); "
        "pointing game: the map's peak on a nucleus. 95% CIs resample the 13 images. Caveat: IDC patches "
        "come from a lower magnification than MoNuSeg, so the tiles are only roughly in-domain.",
        "",
        md_table(["map", "energy in nuclei [95% CI]", "lift over area [95% CI]", "pointing game [95% CI]"], rows),
        "",
        f"Wall time: {wall:.1f} min (no training), on {machine_note()}. Seed {args.seed}.",
    ])
    write_section(STUDY, md, {"maps": numbers, "n_tiles": len(m), "mean_area": float(area.mean()),
                              "mean_p_idc": float(p_idc.mean())})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
