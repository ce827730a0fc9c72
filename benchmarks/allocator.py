"""Training-step throughput with and without medattn's allocator tuning (medattn.runtime).

Runs the same ``patch_cnn_attention`` train steps (width 0.5, batch 64, 96 px, Adam) in fresh
subprocesses, alternately with the tuning on and off (``MEDATTN_NO_MALLOPT=1``), and reports
images/s, kernel (sys) time and the ratio. Rewrites its own section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from _doc import replace_section

HEADING = "## CPU allocator tuning: train-step throughput (allocator.py)"

CHILD = r"""
import json, os, time, torch
from medattn.runtime import tune_allocator
applied = tune_allocator()
torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
torch.manual_seed(0)
from medattn.models import create_model
m = create_model("patch_cnn_attention", width=0.5)
opt = torch.optim.Adam(m.parameters())
x = torch.randn(64, 3, 96, 96)
y = torch.randint(0, 2, (64,)).float()
def step():
    loss = torch.nn.functional.binary_cross_entropy_with_logits(m(x).squeeze(1), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
step()
c0, t0 = os.times(), time.perf_counter()
n = int(os.environ.get("BENCH_STEPS", "6"))
for _ in range(n):
    step()
dt, c1 = time.perf_counter() - t0, os.times()
print(json.dumps({"applied": applied, "img_s": 64 * n / dt, "user": c1.user - c0.user, "sys": c1.system - c0.system}))
"""


def run(tuned: bool, steps: int, threads: int) -> dict:
    env = {**os.environ, "BENCH_STEPS": str(steps), "BENCH_THREADS": str(threads)}
    env.pop("MEDATTN_NO_MALLOPT", None)
    if not tuned:
        env["MEDATTN_NO_MALLOPT"] = "1"
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-doc", action="store_true")
    a = ap.parse_args()
    res: dict[bool, list[dict]] = {True: [], False: []}
    for r in range(a.rounds):
        for tuned in ((True, False) if r % 2 == 0 else (False, True)):
            res[tuned].append(run(tuned, a.steps, a.threads))
    med = {k: {f: statistics.median(d[f] for d in v) for f in ("img_s", "user", "sys")} for k, v in res.items()}
    ratios = statistics.median(t["img_s"] / u["img_s"] for t, u in zip(res[True], res[False], strict=True))
    load = os.getloadavg()[0]
    section = f"""{HEADING}

`patch_cnn_attention` (width 0.5) train steps, batch 64, 96×96, Adam, {a.threads} torch threads, {a.steps}
steps after one warm-up, in fresh processes alternating tuned / untuned, {a.rounds} rounds (medians).
Untuned = glibc defaults (`MEDATTN_NO_MALLOPT=1`): every large activation buffer is a new `mmap`,
page-faulted and zero-filled again each step. Tuned = `medattn.runtime.tune_allocator()` (called by the
CLI, the trainers and the tests). 1-min load average at the end: {load:.1f}.

| allocator | images/s | user s | sys s |
|---|---:|---:|---:|
| glibc defaults | {med[False]['img_s']:.1f} | {med[False]['user']:.1f} | {med[False]['sys']:.1f} |
| medattn tuned | {med[True]['img_s']:.1f} | {med[True]['user']:.1f} | {med[True]['sys']:.1f} |

Throughput ratio tuned / untuned: **{ratios:.2f}×**.

Command: `.venv/bin/python benchmarks/allocator.py --rounds {a.rounds} --steps {a.steps} --threads {a.threads}`
"""
    print(section)
    if not a.no_doc:
        replace_section(HEADING, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
