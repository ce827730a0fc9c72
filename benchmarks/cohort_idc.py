"""Benchmark: a cohort of real IDC patient slides run plainly, in two shards + merge, and on a
local Dask cluster; the three ``cohort.csv`` must agree row for row (times aside). A truncated
copy of one slide and a copy with corrupt JPEG tiles ride along: the first is a failed row, the
second finishes with its tiles marked.

Slides: one per patient of ``../shared/data/breast_idc`` (the first ``--patients`` ids), the
50 px patches put back at their x, y (:func:`medattn.infer.testslides.assemble_idc_slide`,
4 µm/px). Bundle: ``--bundle`` or a tiny untrained CNN (timing and agreement only; its scores
mean nothing). Rewrites its own section of docs/benchmarks.md.

    .venv/bin/python benchmarks/cohort_idc.py [--patients 20] [--bundle runs/idc-cpu/bundle]
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from _doc import replace_section  # noqa: E402

HEADING = "## A cohort of IDC patient slides: plain, shards + merge, Dask (cohort_idc.py)"


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    j = rows[0].index("seconds")
    return [[c for k, c in enumerate(r) if k != j] for r in rows]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=20)
    ap.add_argument("--bundle", type=Path, default=None)
    ap.add_argument("--model-mpp", type=float, default=8.0, help="tiny bundle: 64 level-0 px tiles at 4 µm/px")
    args = ap.parse_args()
    data = ROOT.parent / "shared" / "data" / "breast_idc"
    if not data.is_dir():
        print(f"skipped: {data} is absent")
        return 0
    from tests.infer.conftest import save_tiny_bundle

    from medattn.cli import main as cli
    from medattn.infer.testslides import assemble_idc_slide

    tmp = Path(tempfile.mkdtemp(prefix="cohort_idc."))
    bundle = args.bundle or save_tiny_bundle(tmp / "bundle", gain=2000.0)
    slides = tmp / "slides"
    pids = sorted({p.name.split("_")[0] for p in (data / "images").rglob("*_idx5_*.png")}, key=int)[: args.patients]
    t0 = time.perf_counter()
    for pid in pids:
        assemble_idc_slide(data, pid, slides / f"{pid}.svs")
    t_build = time.perf_counter() - t0
    raw = (slides / f"{pids[0]}.svs").read_bytes()
    (slides / "truncated.svs").write_bytes(raw[: len(raw) // 3])
    common = ["slide", str(bundle), str(slides), "--workers", "0", "--min-tissue", "0.2"]
    if args.bundle is None:
        common += ["--model-mpp", str(args.model_mpp)]
    times = {}
    t0 = time.perf_counter()
    cli([*common, "--out", str(tmp / "plain")])
    times["plain (one process)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for k in (1, 2):
        cli([*common, "--out", str(tmp / "sharded"), "--shard", f"{k}/2"])
    cli(["slide-merge", str(tmp / "sharded")])
    times["--shard 1/2, 2/2 one after the other + slide-merge"] = time.perf_counter() - t0
    try:
        import distributed  # noqa: F401

        t0 = time.perf_counter()
        cli([*common, "--out", str(tmp / "dask"), "--engine", "dask"])
        times["--engine dask (local cluster, 2 workers × 1 core, start included)"] = time.perf_counter() - t0
    except ImportError:
        pass
    plain = _rows(tmp / "plain" / "cohort.csv")
    same = {name: _rows(tmp / d / "cohort.csv") == plain for name, d in (("shards", "sharded"), ("dask", "dask"))
            if (tmp / d / "cohort.csv").is_file()}
    ok = sum(r[1] == "ok" for r in plain[1:])
    failed = [r[0] for r in plain[1:] if r[1] == "failed"]
    tiles = sum(int(r[2]) for r in plain[1:] if r[1] == "ok")
    lines = [HEADING, "", f"{len(pids)} patient slides (built in {t_build:.0f} s) + a truncated copy; "
             f"{'bundle ' + str(args.bundle) if args.bundle else 'tiny untrained CNN (timing and agreement only)'}; "
             f"{tiles} tissue tiles; {ok} slides ok, failed: {', '.join(failed) or 'none'}.", "",
             "| mode | wall time (s) |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in times.items()]
    lines += ["", "cohort.csv identical to the plain run's (times aside): "
              + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in same.items()) + ".", "",
              f"`.venv/bin/python benchmarks/cohort_idc.py --patients {args.patients}` on 2 cores."]
    replace_section(HEADING, "\n".join(lines))
    print("\n".join(lines))
    return 0 if all(same.values()) and failed == ["truncated"] else 1


if __name__ == "__main__":
    sys.exit(main())
