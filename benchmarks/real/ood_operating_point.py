"""Warnings judged at the operating point (issue 21): what share of in-distribution and of foreign
inputs each bundle's *stored* threshold flags.

Run from the repo root, after training the two bundles as a user would (or pass ``--train``)::

    medattn train idc-cpu --data ../shared/data/breast_idc --set data.split.test_fraction=0 --out runs/idc-cpu
    medattn train herlev-cpu --data ../shared/data/herlev_dev/images --set data.split.test_fraction=0 \\
        --out runs/herlev-cpu
    .venv/bin/python benchmarks/real/ood_operating_point.py --idc runs/idc-cpu --herlev runs/herlev-cpu

Every item gets the checks of :meth:`Predictor.conclude` (the one inference path of ``medattn
predict`` and REST, batched here); an item counts as *flagged* when its answer carries an ``ood``
or a ``scale`` warning.
Sets per bundle:

- in-distribution: the run's validation items (patients / source images the network never trained
  on; the OOD Gaussians are fitted on training + validation features and the threshold on
  out-of-fold validation scores, so this rate is close to, not independent of, the design rate);
  the out-of-fold rate stored in the bundle is shown beside it;
- far out-of-distribution: NIH chest X-rays (64 px), Herlev cells, 50×50 crops of the MoNuSeg 40×
  tiles (for the 2.5× IDC bundle), IDC patches (for the Herlev bundle).

CIs are 95% percentile bootstraps resampling patients / source images (items for X-rays and
cells). A 1000×1000 MoNuSeg 40× tile is also sent through ``medattn predict`` and through REST
(``/v1/predict``) to show both give the same image-level warnings.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    REPO,
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

STUDY = "ood_operating_point"
NOTE = ("Reading (2026-12-05, re-measured on the bundles the shipped recipes train now: bf16 autocast and "
        "channels-last, full schedules, each trained alone on the machine): every target is met. X-rays, Herlev "
        "cells and IDC patches are flagged at 98-100% with 4% (idc-cpu) and 7% (herlev-cpu) of validation items "
        "flagged. 50×50 crops of 40× MoNuSeg tiles are flagged at 92.5% (86% by the OOD model, the rest by the "
        "scale check), closest to its 90% target; on the fp32 bundles of the day before the same crops were "
        "flagged at 94.5% (90% by the OOD model). The OOD model's input component reads the blob-energy profile "
        "over 9 scales (a crop's energy rises towards 8 px, a 2.5× patch's falls from the finest scale); with "
        "only the fine-detail share and blob scale, and a full covariance on that component, the fp32 bundle "
        "flagged 74.5%. The component's rank rule (at most half its features) was checked on crops of another "
        "sample than this table's. A whole 1000×1000 40× tile is flagged by both doors alike (`ood` when over "
        "half of its tiles are out of distribution, `scale` from the median tile detail).")
N_ITEMS = 200
TARGETS = {"idc": {"in-distribution": ("<=", 0.10), "NIH X-rays": (">=", 0.95), "Herlev cells": (">=", 0.95),
                   "MoNuSeg 40x crops 50x50": (">=", 0.90)},
           "herlev": {"in-distribution": ("<=", 0.10), "IDC patches": (">=", 0.95), "NIH X-rays": (">=", 0.95)}}
TRAIN = {"idc": ["idc-cpu", "breast_idc"], "herlev": ["herlev-cpu", "herlev_dev/images"]}


def train(name: str, out: Path, epochs: int | None) -> None:
    recipe, data = TRAIN[name]
    root = require_data(data.split("/")[0]) / "/".join(data.split("/")[1:])
    cmd = [str(REPO / ".venv" / "bin" / "medattn"), "train", recipe, "--data", str(root), "--set",
           "data.split.test_fraction=0", "--out", str(out)]
    if epochs:
        cmd += ["--set", f"trainer.max_epochs={epochs}"]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)


def _pick(items: list[Any], n: int, seed: int) -> list[Any]:
    rng = np.random.default_rng(seed)
    return [items[i] for i in sorted(rng.choice(len(items), min(n, len(items)), replace=False))]


def foreign_sets(seed: int = 0) -> dict[str, tuple[list[Any], list[str]]]:
    """``{name: (items, groups)}`` of the far-OOD kinds (files, or arrays for crops)."""
    from medattn.decode import read_image

    out: dict[str, tuple[list[Any], list[str]]] = {}
    xr = _pick(sorted((require_data("nih_chestxray14_dev") / "images_64px").glob("*.png")), N_ITEMS, seed)
    out["NIH X-rays"] = (xr, [p.name for p in xr])
    her = _pick(sorted((require_data("herlev_dev") / "images").rglob("*.*")), N_ITEMS, seed)
    out["Herlev cells"] = (her, [p.name.split("-")[0] for p in her])
    idc = _pick(sorted((require_data("breast_idc") / "images").rglob("*.png")), N_ITEMS, seed)
    out["IDC patches"] = (idc, [p.name.split("_")[0] for p in idc])
    rng = np.random.default_rng(seed)
    tiles = sorted((require_data("monuseg_train_subset") / "images").glob("*.png"))
    imgs = [read_image(p) for p in tiles]
    crops, groups = [], []
    for i in range(N_ITEMS):
        k = i % len(imgs)
        y, x = rng.integers(0, imgs[k].shape[0] - 50), rng.integers(0, imgs[k].shape[1] - 50)
        crops.append(np.ascontiguousarray(imgs[k][y:y + 50, x:x + 50]))
        groups.append(tiles[k].stem)
    out["MoNuSeg 40x crops 50x50"] = (crops, groups)
    return out


def validation_items(run: Path) -> tuple[list[Path], list[str]]:
    import pandas as pd

    info = load_json(run / "run.json")
    t = pd.read_csv(run / "split.csv", dtype=str, keep_default_na=False)
    v = t[t["split"] == "valid"]
    return [Path(info["data"]) / f for f in v["file"]], list(v["group"])


def flags(pred: Any, items: list[Any]) -> dict[str, np.ndarray]:
    """Per item: ``ood``, ``scale``, ``flagged`` (either) and ``any`` (any warning).

    The checks are :meth:`Predictor.conclude`'s (:func:`medattn.trust.assess.assess` on the decoded
    image, the prepared input and its probabilities, with the declared scale), run on batches of
    whole images instead of one image at a time (the same numbers, several times faster); inputs
    the large-input rule tiles go through :meth:`Predictor.infer` itself."""
    import torch

    from medattn.trust.assess import assess

    codes: list[set[str]] = []
    for s in range(0, len(items), 64):
        chunk = items[s:s + 64]
        preps = []
        for it in chunk:
            info: dict[str, Any] = {}
            img = pred.decode(it, info=info)
            preps.append(pred.prepare_input(img, mpp=info.get("mpp"), mpp_source=info.get("mpp_source")))
        whole = [i for i, p in enumerate(preps) if len(p.x) == 1]
        out: dict[int, set[str]] = {}
        if whole:
            x = torch.cat([preps[i].x for i in whole])
            probs = pred.predict_tensor(x)
            meta = pred.meta
            pred.meta = {**meta, "tta": False}  # the TTA spread (an uncertainty, never a warning) is not needed
            try:
                rows = assess(pred, [preps[i].image for i in whole], x, probs,
                              scale=[preps[i].scale() for i in whole])
            finally:
                pred.meta = meta
            out.update({i: {w["code"] for w in r["warnings"]} for i, r in zip(whole, rows, strict=True)})
        for i, p in enumerate(preps):
            if i not in out:
                out[i] = {w["code"] for w in pred.conclude(p, pred.forward(p))["warnings"]}
        codes += [out[i] for i in range(len(chunk))]
    return {"ood": np.asarray(["ood" in c for c in codes]), "scale": np.asarray(["scale" in c for c in codes]),
            "flagged": np.asarray([bool({"ood", "scale"} & c) for c in codes]),
            "any": np.asarray([bool(c) for c in codes])}


def rate_ci(flag: np.ndarray, groups: list[str]) -> dict[str, float]:
    from medattn.metrics.bootstrap import bootstrap_ci

    g = groups if len(set(groups)) < len(groups) else None
    return bootstrap_ci(lambda i: {"rate": float(flag[i].mean())}, len(flag), g, 1000, 0.05, 0)["rate"]


def big_tile_doors(bundle: Path, tile: Path) -> dict[str, Any]:
    """Image-level warning codes of one large tile through ``medattn predict`` and REST."""
    from fastapi.testclient import TestClient

    from medattn.infer.records import read_rows
    from medattn.serve.api import create_app

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        subprocess.run([sys.executable, "-m", "medattn.cli", "predict", str(bundle), str(tile), "--out", tmp],
                       cwd=REPO, env=env, check=True, capture_output=True)
        row = read_rows(Path(tmp) / "predictions.csv")[0]
    cli = sorted({w["code"] for w in json.loads(row["warnings"] or "[]")})
    with TestClient(create_app(bundle, ui=False, max_wait_ms=5)) as c:
        r = c.post("/v1/predict", files=[("file", (tile.name, tile.read_bytes(), "image/png"))])
        p = r.json()["predictions"][0]
    return {"tile": tile.name, "cli": cli, "rest": sorted({w["code"] for w in p["warnings"]}),
            "handling": row["handling"], "tiles": int(row["tiles"]), "tile_ood_share": float(row["tile_ood_share"]),
            "rest_tile_ood_share": p.get("tile_ood_share"), "notes": [n["code"] for n in p.get("notes", [])]}


def score(runs: dict[str, Path]) -> dict[str, Any]:
    """Flag rates of every set for each bundle (the section's numbers)."""
    from medattn.bundle import load_bundle

    kinds = foreign_sets()
    numbers: dict[str, Any] = {"bundles": {}}
    for name, run in runs.items():
        pred = load_bundle(run / "bundle", device="cpu")
        ood = pred.meta["ood"]
        entry: dict[str, Any] = {"run": str(run), "threshold": ood["threshold"], "layers": ood.get("layers"),
                                 "valid_oof_flag_rate": ood.get("valid_flag_rate"), "sets": {}}
        vi, vg = validation_items(run)
        sets = {"in-distribution": (vi, vg)}
        sets.update({k: v for k, v in kinds.items() if k in TARGETS[name]})
        for kind, (items, groups) in sets.items():
            f = flags(pred, items)
            ci = rate_ci(f["flagged"], groups)
            op, target = TARGETS[name][kind]
            met = ci["value"] <= target if op == "<=" else ci["value"] >= target
            entry["sets"][kind] = {"n": len(items), "groups": len(set(groups)), "flagged": ci,
                                   "ood": float(f["ood"].mean()), "scale": float(f["scale"].mean()),
                                   "any_warning": float(f["any"].mean()), "target": f"{op} {target}", "met": bool(met)}
        if name == "idc":
            tiles = sorted((require_data("monuseg_train_subset") / "images").glob("*.png"))[:3]
            entry["big_tiles"] = [big_tile_doors(run / "bundle", t) for t in tiles]
        view = pred.meta.get("positive_view") or {}
        if view.get("operating_points"):
            entry["operating_points"] = {"youden": view["threshold"], **view["operating_points"]}
        numbers["bundles"][name] = entry
    return numbers


def render(numbers: dict[str, Any]) -> str:
    """The markdown section from the numbers (also from a saved ``sections/ood_operating_point.json``)."""
    rows = []
    for name, entry in numbers["bundles"].items():
        for kind, v in entry["sets"].items():
            op, target = v["target"].split()
            label = (f"validation ({v['n']} items, {v['groups']} groups)" if kind == "in-distribution"
                     else f"{kind} ({v['n']})")
            rows.append([f"{name}-cpu", label, fmt_ci(v["flagged"]), fmt(v["ood"]), fmt(v["scale"]),
                         f"{op} {float(target):.2f}", "yes" if v["met"] else "**no**"])
    md = ["## Warnings at the operating point: OOD and scale flags of the shipped bundles (issue 21)", "",
          f"Command: `{numbers['command']}`. Bundles trained as a user would: `medattn train idc-cpu --data "
          "../shared/data/breast_idc --set data.split.test_fraction=0` and `medattn train herlev-cpu --data "
          "../shared/data/herlev_dev/images --set data.split.test_fraction=0`"
          + (f" ({numbers['note']})" if numbers.get("note") else "")
          + f". Wall time: {numbers['minutes']:.1f} min (scoring) on {numbers['machine']}.", "",
          "Flagged = the checks of `Predictor.conclude` (what `medattn predict` and REST return) give an `ood` or a "
          "`scale` warning, at the threshold stored in the bundle; the columns are shares of items. The OOD model "
          "combines Gaussians on every ResNet stage, the penultimate features and the input statistics (colour, "
          "contrast, the blob-energy profile over 9 scales, fine-detail share, blob scale; a component keeps at "
          "most half its features as PPCA directions); the scale check compares the image's fine-detail share with "
          "the training images'. In-distribution = the run's validation items (never trained on by the network; in "
          "the Gaussian fit, threshold set out of fold: the bundle's stored out-of-fold rates are "
          + ", ".join(f"{k} {fmt(v.get('valid_oof_flag_rate'))}" for k, v in numbers["bundles"].items())
          + "). 95% CIs resample patients / source images.", "",
          md_table(["bundle", "items", "flagged [95% CI]", "ood", "scale", "target", "met"], rows), ""]
    bt = numbers["bundles"].get("idc", {}).get("big_tiles") or []
    if bt:
        md += ["A 1000×1000 MoNuSeg 40× tile (PNG, no resolution in the file) through both doors "
               "(`medattn predict` and `POST /v1/predict`):", "",
               md_table(["tile", "handling", "tiles", "OOD tiles (CLI / REST)", "warnings CLI", "warnings REST", "notes"],
                        [[b["tile"], b["handling"], b["tiles"], f"{fmt(b['tile_ood_share'], 2)} / "
                          f"{fmt(b['rest_tile_ood_share'], 2)}", ", ".join(b["cli"]), ", ".join(b["rest"]),
                          ", ".join(b["notes"])] for b in bt]), ""]
    ops = numbers["bundles"].get("herlev", {}).get("operating_points")
    if ops and "screening" in ops:
        s = ops["screening"]
        md += [f"Herlev screening operating point (abnormal vs normal, chosen on {s['chosen_on']}): P(abnormal) ≥ "
               f"{fmt(s['threshold'])} for sensitivity ≥ {s['target_sensitivity']:g} (validation sensitivity "
               f"{fmt(s['valid_sensitivity'])}, specificity {fmt(s['valid_specificity'])}); Youden's threshold "
               f"{fmt(ops['youden'])}. Both are stored in the bundle and shown by `medattn info`.", ""]
    md += [NOTE]
    return "\n".join(md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--idc", type=Path, default=REPO / "runs" / "idc-cpu", help="idc-cpu run directory")
    ap.add_argument("--herlev", type=Path, default=REPO / "runs" / "herlev-cpu", help="herlev-cpu run directory")
    ap.add_argument("--train", action="store_true", help="train the runs first (as in the module docstring)")
    ap.add_argument("--epochs", type=int, default=None, help="with --train: trainer.max_epochs (load-bound machines)")
    ap.add_argument("--note", default="", help="a sentence on how the runs were trained (epochs, machine load)")
    ap.add_argument("--from-json", type=Path, default=None,
                    help="rewrite the section from a saved sections/ood_operating_point.json (no scoring)")
    args = ap.parse_args()
    if args.from_json:
        numbers = load_json(args.from_json)
        write_section(STUDY, render(numbers), numbers)
        return
    setup_torch()
    t0 = time.time()
    runs = {"idc": args.idc, "herlev": args.herlev}
    if args.train:
        for k, r in runs.items():
            train(k, r, args.epochs)
    numbers = score(runs)
    numbers.update(command=command_line(), note=args.note, minutes=(time.time() - t0) / 60, machine=machine_note())
    write_section(STUDY, render(numbers), numbers)


if __name__ == "__main__":
    main()
