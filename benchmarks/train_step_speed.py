"""Faster training steps on a CPU: channels_last, bf16 autocast and torch.compile against plain fp32.

For each shipped CPU recipe (``idc-cpu``, ``herlev-cpu``, ``nuclei-cpu``) the model is built by
``engine.fit.build_model`` from the recipe, and one training step (forward, cross-entropy,
backward, the recipe's optimiser) runs on inputs of the recipe's batch size and image size. Each
variant runs in a fresh subprocess with 2 torch threads and medattn's allocator tuning; rounds
alternate the variants, and the median images/s per variant is kept. The ratio variant / fp32 is
what a variant would buy in epochs within the same wall time.

Usage: ``.venv/bin/python benchmarks/train_step_speed.py [--rounds 3] [--steps 8]``; it rewrites its
section of docs/benchmarks.md (``--no-doc`` to only print).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from _doc import replace_section

HEADING = "## Faster training steps: channels_last, bf16, torch.compile (train_step_speed.py)"
RECIPES = ("idc-cpu", "herlev-cpu", "nuclei-cpu")
VARIANTS = ("fp32", "channels_last", "bf16", "channels_last+bf16", "compile")

CHILD = r"""
import json, os, sys, time, torch
from medattn.runtime import tune_allocator
tune_allocator()
torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
torch.manual_seed(0)
from medattn.engine.config import load_recipe
from medattn.engine.fit import build_model, num_outputs
recipe, variant, steps = os.environ["BENCH_RECIPE"], os.environ["BENCH_VARIANT"], int(os.environ["BENCH_STEPS"])
r = load_recipe(recipe)
names = r.data.class_names or ["a", "b"]
model = build_model(r, names)
k = num_outputs(r, names)
b, s = r.trainer.batch_size, r.data.image_size
x = torch.rand(b, 3, s, s)
seg = r.task.type == "segmentation"
y = torch.randint(0, max(k, 2), (b, s, s) if seg else (b,))
if "channels_last" in variant:
    model = model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
opt_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD, "nadam": torch.optim.NAdam}
opt = opt_cls[r.optimizer.name](model.parameters(), lr=r.optimizer.lr)
model.train()
fwd = torch.compile(model) if variant == "compile" else model
bf16 = "bf16" in variant
def loss_of(out):
    if isinstance(out, (tuple, list)):
        out = out[0]
    out = out.float()
    if k == 1 and not seg:
        return torch.nn.functional.binary_cross_entropy_with_logits(out.reshape(-1), y.float().clamp(max=1))
    return torch.nn.functional.cross_entropy(out[:, :max(k, 2)] if out.shape[1] >= 2 else out, y.clamp(max=out.shape[1] - 1))
def step():
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = fwd(x)
    loss = loss_of(out)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
t0 = time.perf_counter()
step(); step()
warm = time.perf_counter() - t0
t0 = time.perf_counter()
for _ in range(steps):
    step()
dt = time.perf_counter() - t0
print(json.dumps({"img_s": b * steps / dt, "warmup_s": warm, "batch": b, "size": s}))
"""


def run(recipe: str, variant: str, steps: int, threads: int) -> dict:
    env = {**os.environ, "BENCH_RECIPE": recipe, "BENCH_VARIANT": variant, "BENCH_STEPS": str(steps),
           "BENCH_THREADS": str(threads)}
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1][:160]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES))
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()
    t_start = time.time()
    rows, notes = [], []
    for recipe in args.recipes:
        got: dict[str, list[dict]] = {v: [] for v in args.variants}
        for r in range(args.rounds):
            order = args.variants if r % 2 == 0 else list(reversed(args.variants))
            for v in order:
                res = run(recipe, v, args.steps, args.threads)
                got[v].append(res)
                print(recipe, v, res, flush=True)
        base = statistics.median(g["img_s"] for g in got["fp32"] if "img_s" in g) if got.get("fp32") else None
        for v in args.variants:
            ok = [g for g in got[v] if "img_s" in g]
            if not ok:
                notes.append(f"`{recipe}` {v}: failed ({got[v][0].get('error')})")
                rows.append(f"| `{recipe}` | {v} | failed | | |")
                continue
            med = statistics.median(g["img_s"] for g in ok)
            warm = statistics.median(g["warmup_s"] for g in ok)
            ratio = f"{med / base:.2f}×" if base else "n/a"
            rows.append(f"| `{recipe}` ({ok[0]['batch']}×{ok[0]['size']}²) | {v} | {med:.1f} | {ratio} | {warm:.1f} |")
    load = os.getloadavg()[0]
    text = "\n".join([
        HEADING, "",
        f"One training step (forward, cross-entropy, backward, the recipe's optimiser) of each shipped CPU "
        f"recipe's model at its batch and image size, {args.steps} timed steps after 2 warm-up steps, "
        f"{args.threads} torch threads, each variant in a fresh process, {args.rounds} rounds alternating "
        f"the order (medians). bf16 = `torch.autocast('cpu', torch.bfloat16)`; compile = `torch.compile` "
        f"(inductor), its warm-up includes compilation. 1-min load average at the end: {load:.1f}; "
        f"{(time.time() - t_start) / 60:.1f} min.", "",
        "| recipe (batch × image) | variant | images/s | vs fp32 | warm-up s |",
        "|---|---|---:|---:|---:|",
        *rows, "",
        *(["Failures: " + "; ".join(notes), ""] if notes else []),
        f"Command: `.venv/bin/python benchmarks/train_step_speed.py --rounds {args.rounds} --steps {args.steps} "
        f"--threads {args.threads}`",
    ])
    print(text)
    if not args.no_doc:
        replace_section(HEADING, text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
