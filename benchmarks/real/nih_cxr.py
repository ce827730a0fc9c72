"""NIH ChestX-ray14 dev subset at 64 px: multilabel ResNet-18 and AG-CNN, split by patient.

Run from the repo root::

    .venv/bin/python benchmarks/real/nih_cxr.py

Both models are trained by ``medattn train`` (ResNet-18: ``benchmarks/real/recipes/cxr14-resnet18-64.yaml``;
AG-CNN: the shipped ``cxr14-agcnn`` recipe shrunk to ResNet-18 branches at 64 px with ``--set``), on the
same patient split (val 15%, test 25%, seed 0). The table reports per-finding test AUROC with
patient-bootstrap CIs wherever the test set holds both classes. The data are tiny (a few hundred
64 px images, NLP-mined labels), so these numbers say the pipeline runs on real X-rays, not how
well the models would do on ChestX-ray14.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    REPO,
    RUNS,
    command_line,
    dump_json,
    fmt_ci,
    load_json,
    machine_note,
    md_table,
    require_data,
    write_section,
)

STUDY = "nih_cxr"
SPLIT = ["--set", "data.split.val_fraction=0.15", "--set", "data.split.test_fraction=0.25",
         "--set", "data.num_workers=0"]
VARIANTS = {
    "resnet18": ["benchmarks/real/recipes/cxr14-resnet18-64.yaml"],
    "agcnn": ["cxr14-agcnn", "--set", "model.args.backbone=resnet18", "--set", "model.args.crop_size=64",
              "--set", "data.image_size=64", "--set", "trainer.max_epochs=3", "--set", "trainer.batch_size=32",
              "--set", "optimizer.lr=0.01", *SPLIT],
}
FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
            "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", default="resnet18,agcnn")
    ap.add_argument("--retrain", action="store_true")
    args = ap.parse_args(argv)
    data = require_data("nih_chestxray14_dev")
    for v in args.variants.split(","):
        out = RUNS / STUDY / v
        if (out / "bench_info.json").is_file() and not args.retrain:
            print(f"[{v}] cached")
            continue
        rel = out.relative_to(REPO) if out.is_relative_to(REPO) else out
        cmd = [str(REPO / ".venv" / "bin" / "medattn"), "train", *VARIANTS[v][:1], "--data", str(data),
               "--out", str(rel), *VARIANTS[v][1:]]
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("MEDATTN_THREADS", "1")}
        print("$", " ".join(cmd), flush=True)
        t0 = time.time()
        subprocess.run(cmd, cwd=REPO, env=env, check=True)
        dump_json(out / "bench_info.json", {"variant": v, "minutes": (time.time() - t0) / 60,
                                            "train_command": " ".join(["medattn", *cmd[1:]]),
                                            "command": command_line()})
    res = {}
    for v in VARIANTS:
        out = RUNS / STUDY / v
        if (out / "bench_info.json").is_file():
            res[v] = {"info": load_json(out / "bench_info.json"), "metrics": load_json(out / "metrics.json")}
    if not res:
        return 0
    names = list(res)
    rows = [["mean over findings", *[fmt_ci(res[v]["metrics"]["metrics"]["mean_auroc"]) for v in names]]]
    for f in FINDINGS:
        cells = []
        for v in names:
            m = res[v]["metrics"]["metrics"].get(f"auroc_{f}")
            ok = m and m.get("value") is not None and m["value"] == m["value"]
            cells.append(fmt_ci(m) if ok else "n/a (one class in test)")
        rows.append([f, *cells])
    first = res[names[0]]["metrics"]
    wall = sum(r["info"]["minutes"] for r in res.values())
    md = "\n".join([
        "## Chest X-ray, 14 findings (`nih_chestxray14_dev`, 64 px)",
        "",
        "Command: `.venv/bin/python benchmarks/real/nih_cxr.py`.",
        "Each model is trained by: " + "; ".join(f"`{r['info']['train_command']}`" for r in res.values()) + ".",
        "",
        f"Split by patient (val 15%, test 25%, seed 0): {first['n_items']} test images from {first['n_groups']} "
        "patients. AUROC per finding on test with 95% CIs resampling patients; the mean runs over findings "
        "with both classes in test. Honest caveat: a few hundred 64 px images with report-mined labels and a "
        "handful of positives per finding in test, so most per-finding AUROCs are noise around 0.5 (values "
        "far below 0.5 come from two or three positives); read this table as 'the multilabel and AG-CNN "
        "pipelines run end to end on real X-rays', not as a performance claim.",
        "",
        md_table(["finding (test AUROC)", *names], rows),
        "",
        f"Wall time: {wall:.1f} min for the runs above, on {machine_note()}. Seed 0.",
    ])
    write_section(STUDY, md, {v: r for v, r in res.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
