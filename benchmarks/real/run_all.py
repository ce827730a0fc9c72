"""``make bench-real``: run every real-data study, then assemble ``docs/results.md``.

Each study script skips (exit 0) when ``../shared/data`` is absent and writes its own section
to ``benchmarks/real/sections/<study>.md``; this script concatenates the sections in a fixed
order under a short header, so ``docs/results.md`` holds exactly what the scripts wrote.
``--doc-only`` rebuilds the page from the existing sections without training.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ORDER = ("cpu_levers", "cpu_idc-full", "cpu_idc-hed", "cpu_idc-macenko", "cpu_idc", "slide_area", "cpu_nuclei-head",
         "cpu_nuclei-bf16", "cpu_nuclei-wide", "cpu_nuclei", "cpu_herlev-bf16", "cpu_herlev-focal", "cpu_herlev-mix",
         "cpu_herlev-bal", "cpu_herlev-long", "cpu_herlev", "herlev", "herlev_grade", "nih_cxr", "ood", "ood_operating_point", "explanations")
SCRIPTS = {"cpu_idc": "cpu_recipes.py --study idc --folds 2 --cv-set trainer.max_epochs=6 --final",
           "slide_area": "slide_area.py --train --folds 3 --epochs 4",
           "cpu_nuclei": "cpu_recipes.py --study nuclei --folds 3 --cv-set trainer.max_epochs=8 --final",
           "cpu_nuclei-head": "cpu_recipes.py --study nuclei-head --folds 3",
           "cpu_levers": "cpu_recipes.py --summary",
           "cpu_idc-full": "cpu_recipes.py --study idc-full --folds 5 --final",
           "cpu_nuclei-bf16": "cpu_recipes.py --study nuclei-bf16 --folds 3 --final",
           "cpu_herlev-bf16": "cpu_recipes.py --study herlev-bf16 --folds 5 --final",
           "cpu_herlev-focal": "cpu_recipes.py --study herlev-focal --folds 5",
           "cpu_herlev-mix": "cpu_recipes.py --study herlev-mix --folds 5",
           "cpu_nuclei-wide": "cpu_recipes.py --study nuclei-wide --folds 3",
           "cpu_idc-hed": "cpu_recipes.py --study idc-hed --folds 5",
           "cpu_idc-macenko": "cpu_recipes.py --study idc-macenko --folds 5",
           "cpu_herlev-bal": "cpu_recipes.py --study herlev-bal --folds 5",
           "cpu_herlev-long": "cpu_recipes.py --study herlev-long --folds 5",
           "cpu_herlev": "cpu_recipes.py --study herlev --folds 3 --cv-set trainer.max_epochs=12 --final",
           "herlev": "herlev.py", "herlev_grade": "herlev_grade.py", "nih_cxr": "nih_cxr.py", "ood": "ood.py",
           "ood_operating_point": "ood_operating_point.py --train",
           "explanations": "explanations.py"}

HEADER = """# Results on real data

Every table below was written by a script in `benchmarks/real/` and copied here by
`benchmarks/real/run_all.py` (`make bench-real`); each section names the exact command, the split,
the seed and the CPU wall time. Every model is trained by `medattn train` (recipe → `engine/fit.py`),
scored by `medattn evaluate` and compared by `medattn compare`, so a user reproduces a row with the
commands printed beside it. Thresholds, temperatures and post-processing settings were chosen on
validation data only; test items (or held-out folds) were used once. CIs are 95% percentile
bootstraps that resample patients / source images where they exist; cross-validation tables give,
with fewer than 5 folds, the pooled out-of-fold value with its group-bootstrap CI, else the mean
across folds with its t-interval (every interval within the metric's range).

Machine: 2 CPU cores, no GPU. The full-schedule sections of 2026-12-05 (`idc-cpu` 5-fold, the nuclei
heads, the bf16 levers, Herlev 5-fold, and the later lever rows: wider U-Net, HED jitter, Macenko,
balanced sampling, 60 epochs) ran each alone on the machine, one fold after another, at the recipes'
shipped schedules (the wider U-Net beside a low-priority test run, as its section says). The shortened `cpu_*` sections (2026-12-01: `idc-cpu` vs CBAM, `nuclei-cpu`
vs its plain baseline, `herlev-cpu` vs its plain baseline) ran two studies side by side at one
thread each while other jobs used the machine, so their wall times are upper bounds. The other
sections are from earlier sessions (2026-11-22 and before) and say so in their text.
"""


def build_doc() -> Path:
    parts = [HEADER.rstrip()]
    missing = []
    for study in ORDER:
        sec = HERE / "sections" / f"{study}.md"
        if sec.is_file():
            parts.append(sec.read_text().rstrip())
        else:
            missing.append(study)
    if missing:
        parts.append("## Not yet run\n\n" + "\n".join(
            f"- `{s}`: no results yet (`.venv/bin/python benchmarks/real/{SCRIPTS[s]}`"
            f"{'' if (HERE / SCRIPTS[s].split()[0]).is_file() else ', script not written yet'})." for s in missing))
    out = REPO / "docs" / "results.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text("\n\n".join(parts) + "\n")
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--doc-only", action="store_true", help="only rebuild docs/results.md")
    args = ap.parse_args(argv)
    failed = []
    if not args.doc_only:
        for study in ORDER:
            script, *script_args = SCRIPTS[study].split()
            if not (HERE / script).is_file():
                continue
            t = time.time()
            print(f"== {SCRIPTS[study]}", flush=True)
            rc = subprocess.call([sys.executable, str(HERE / script), *script_args], cwd=REPO)
            print(f"== {SCRIPTS[study]}: exit {rc} in {time.time() - t:.0f} s", flush=True)
            if rc:
                failed.append(SCRIPTS[study])
    print(f"wrote {build_doc()}")
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
