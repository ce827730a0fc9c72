"""Herlev Pap-smear cells, 7 classes: CBAM-ResNet-18 vs plain ResNet-18 with one recipe.

Run from the repo root::

    .venv/bin/python benchmarks/real/herlev.py

Both models are trained by ``medattn train`` with ``benchmarks/real/recipes/herlev-resnet18.yaml``
(the CBAM run adds ``--set model.args.attention=cbam``), so the run directories under
``runs/real/herlev/{plain,cbam}`` hold the usual recipe, split, metrics with CIs, report and
bundle. This script then derives the standard 2-class view (``normal_*`` folders = normal,
the rest abnormal): the predicted class is mapped to normal/abnormal, sensitivity and
specificity get item-bootstrap CIs, and the paired bootstrap compares CBAM with plain.
"""

from __future__ import annotations

import argparse
import os
import subprocess
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
    dump_json,
    fmt,
    fmt_ci,
    load_json,
    machine_note,
    md_table,
    require_data,
    write_section,
)

STUDY = "herlev"
RECIPE = Path(__file__).resolve().parent / "recipes" / "herlev-resnet18.yaml"
VARIANTS = {"plain": [], "cbam": ["--set", "model.args.attention=cbam"]}
PEER = {"accuracy": 0.569, "sensitivity": 0.889, "specificity": 0.761}


def train(variant: str, data: Path, extra: list[str]) -> dict[str, Any]:
    out = RUNS / STUDY / variant
    if out.exists():  # a retrain replaces the old run (medattn train refuses to overwrite one)
        import shutil

        shutil.rmtree(out)
    cmd = [str(REPO / ".venv" / "bin" / "medattn"), "train", str(RECIPE.relative_to(REPO)), "--data", str(data),
           "--out", str(out.relative_to(REPO) if out.is_relative_to(REPO) else out), *VARIANTS[variant], *extra]
    t0 = time.time()
    env = {**os.environ, "MEDATTN_THREADS": os.environ.get("MEDATTN_THREADS", "1"),
           "OMP_NUM_THREADS": os.environ.get("MEDATTN_THREADS", "1")}
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, env=env, check=True)
    info = {"variant": variant, "train_command": " ".join(["medattn", *cmd[1:]]),
            "minutes": (time.time() - t0) / 60}
    dump_json(out / "bench_info.json", info)
    return info


def two_class(run: Path, n_boot: int, seed: int) -> dict[str, Any]:
    """Normal-vs-abnormal metrics from a run's ``test_predictions.csv``."""
    import pandas as pd

    from medattn.metrics import binary_metrics, bootstrap_ci

    df = pd.read_csv(run / "test_predictions.csv")
    prob_cols = [c for c in df.columns if c.startswith("prob_")]
    names = [c.removeprefix("prob_") for c in prob_cols]
    abnormal = np.array([not n.startswith("normal") for n in names])
    y = abnormal[df["label"].to_numpy()].astype(int)
    pred = abnormal[df["prediction"].to_numpy()].astype(float)
    p_abn = df[prob_cols].to_numpy()[:, abnormal].sum(1)

    def fn(i: np.ndarray) -> dict[str, float]:
        hard = binary_metrics(y[i], pred[i], 0.5)
        return {"sensitivity": hard["recall"], "specificity": hard["specificity"],
                "balanced_accuracy": hard["balanced_accuracy"],
                "auroc_p_abnormal": binary_metrics(y[i], p_abn[i], 0.5)["auroc"]}

    groups = df["group"].astype(str).to_numpy() if "group" in df else None
    if groups is not None and len(set(groups)) == len(groups):
        groups = None  # every cell its own group: resample items
    return {"metrics": bootstrap_ci(fn, len(y), groups, n_boot, seed=seed), "n_test": len(y),
            "n_abnormal": int(y.sum()), "y": y, "pred": pred, "labels": df["label"].to_numpy(),
            "pred7": df["prediction"].to_numpy(), "groups": groups}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", default="plain,cbam")
    ap.add_argument("--set", dest="sets", action="append", default=[],
                    help="extra recipe override passed to medattn train (e.g. data.image_size=96)")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--retrain", action="store_true")
    args = ap.parse_args(argv)
    data = require_data("herlev_dev") / "images"
    extra = [x for s in args.sets for x in ("--set", s)]
    for v in args.variants.split(","):
        run = RUNS / STUDY / v
        if (run / "bench_info.json").is_file() and not args.retrain:
            print(f"[{v}] cached")
            continue
        info = train(v, data, extra)
        info["command"] = command_line()
        dump_json(run / "bench_info.json", info)
    from medattn.metrics.compare import paired_bootstrap

    results, two = {}, {}
    for v in VARIANTS:
        run = RUNS / STUDY / v
        if not (run / "bench_info.json").is_file():
            continue
        results[v] = {"info": load_json(run / "bench_info.json"), "metrics": load_json(run / "metrics.json")["metrics"]}
        two[v] = two_class(run, args.n_boot, args.seed)
    rows = []
    for v, r in results.items():
        m, b = r["metrics"], two[v]["metrics"]
        rows.append([v, fmt_ci(m["accuracy"]), fmt_ci(m["balanced_accuracy"]), fmt_ci(m["macro_f1"]),
                     fmt_ci(b["sensitivity"]), fmt_ci(b["specificity"]), fmt_ci(b["auroc_p_abnormal"]),
                     f"{r['info']['minutes']:.1f}"])
    comp_rows, comp = [], {}
    if "plain" in two and "cbam" in two and np.array_equal(two["plain"]["labels"], two["cbam"]["labels"]):
        yl = two["plain"]["labels"]

        def score(v: str):  # noqa: ANN202
            t = two[v]

            def fn(i: np.ndarray) -> dict[str, float]:
                tp = float(((t["pred"][i] == 1) & (t["y"][i] == 1)).sum())
                tn = float(((t["pred"][i] == 0) & (t["y"][i] == 0)).sum())
                return {"accuracy": float((t["pred7"][i] == yl[i]).mean()),
                        "sensitivity": tp / max(1.0, float((t["y"][i] == 1).sum())),
                        "specificity": tn / max(1.0, float((t["y"][i] == 0).sum()))}
            return fn

        comp = paired_bootstrap(score("plain"), score("cbam"), len(yl), two["plain"]["groups"], n_boot=args.n_boot,
                                seed=args.seed)
        comp_rows = [[k, fmt(c["value_a"]), fmt(c["value_b"]), f"{c['diff']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]",
                      fmt(c["p_value"])] for k, c in comp.items()]
    some = next(iter(results.values()), None)
    cmds = sorted({r["info"].get("command", "") for r in results.values()})
    trains = [r["info"]["train_command"] for r in results.values()]
    wall = sum(r["info"]["minutes"] for r in results.values())
    verdict = []
    for v in results:
        acc = results[v]["metrics"]["accuracy"]
        b = two[v]["metrics"]
        verdict.append(f"- `{v}`: 7-class accuracy {fmt(acc['value'])} vs peer 0.569 "
                       f"({'above' if acc['value'] > 0.569 else 'below'}); sensitivity "
                       f"{fmt(b['sensitivity']['value'])} vs 0.889, specificity {fmt(b['specificity']['value'])} "
                       "vs 0.761.")
    md = "\n".join([
        "## Cervical cytology (`herlev_dev`, 501 cells, 7 classes)",
        "",
        "Command: `.venv/bin/python benchmarks/real/herlev.py`"
        + (f" (this table: {'; '.join(f'`{c}`' for c in cmds)})" if cmds else "") + ".",
        "Each model is trained by: " + "; ".join(f"`{c}`" for c in trains) + ".",
        "",
        "Recipe `benchmarks/real/recipes/herlev-resnet18.yaml` (128 px, 12 epochs max, unless the train command overrides "
        "`data.image_size`): ResNet-18 from scratch (CBAM in every block "
        "for the attention run), class-balanced cross-entropy, Adam 1e-3, plateau LR, early stop on validation "
        "macro AUROC; split 70/15/15 stratified by class, seed 0, grouped by source image: the first number "
        "of a Herlev file name (`149146635-…-002.jpeg`) is taken as the source image (`data.options.group_pattern`), "
        "so crops of one image never sit on both sides (251 source images for 501 cells; 5 names without the "
        "number stay single). "
        + (f"95% CIs: {some['metrics']['accuracy'].get('n_boot', 1000)} bootstrap resamples of test source "
           "images. " if some else "")
        + "2-class view: predicted class mapped to normal (`normal_*`) / abnormal, no extra threshold; "
        "AUROC from the summed abnormal-class probabilities.",
        "",
        md_table(["model", "7-class accuracy", "balanced acc", "macro F1", "abnormal sensitivity",
                  "specificity", "AUROC normal/abnormal", "minutes"], rows),
        "",
        *(["Paired comparison on the same test cells (`medattn.metrics.compare.paired_bootstrap`, "
           "a = plain, b = cbam):", "", md_table(["metric", "plain", "cbam", "cbam − plain [95% CI]", "p"],
                                                 comp_rows), ""] if comp_rows else []),
        "Against the peer (timm ResNet-18, 128 px, 20 epochs, other held-out Herlev cells):",
        "",
        *verdict,
        "",
        f"Wall time: {wall:.1f} min for both runs (train + evaluate + report), on {machine_note()}. Seed 0.",
    ])
    if results:
        write_section(STUDY, md, {"results": {v: {"info": r["info"], "metrics": r["metrics"],
                                                  "two_class": two[v]["metrics"]} for v, r in results.items()},
                                  "comparison": comp})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
