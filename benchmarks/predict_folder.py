"""``medattn predict`` on a folder of patches: this checkout against another (e.g. the commit before a change).

Both run the same CLI command (``python -m medattn.cli predict BUNDLE FOLDER --out …``) in
subprocesses on the same bundle and the same folder, alternated over ``--rounds`` rounds with the
same torch threads; the median wall time of each and their ratio are reported, and the section of
docs/benchmarks.md is rewritten. The peer checkout is given as its ``src`` folder
(``git worktree add /tmp/before <commit>`` then ``--peer-src /tmp/before/src``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _doc import replace_section  # noqa: E402

HEADING = "## `medattn predict` on a folder of patches (predict_folder.py)"


def make_inputs(tmp: Path, n: int, width: float) -> tuple[Path, Path]:
    import torch
    from PIL import Image

    from medattn.bundle import save_bundle
    from medattn.data.synthetic import make_pcam_patch
    from medattn.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from medattn.models import create_model

    torch.manual_seed(0)
    meta = {"task": "binary", "class_names": ["normal", "tumour"], "input_size": 96, "in_chans": 3,
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    bundle = save_bundle(create_model("patch_cnn_attention", width=width), meta, tmp / "bundle")
    folder = tmp / "patches"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(make_pcam_patch(rng, positive=i % 2 == 0)[0]).save(folder / f"p{i:04d}.png")
    return bundle, folder


def run_once(src: Path, bundle: Path, folder: Path, out: Path, threads: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "medattn.cli", "predict", str(bundle), str(folder), "--out", str(out)],
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer-src", type=Path, required=True, help="src/ folder of the checkout to compare with")
    ap.add_argument("--peer-name", default="before", help="how the table names the peer")
    ap.add_argument("--n", type=int, default=400, help="patches in the folder")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="medattn_predict_folder_"))
    bundle, folder = make_inputs(tmp, args.n, args.width)
    ours, peer, loads = [], [], []
    for r in range(args.rounds):
        for who, src, acc in (("peer", args.peer_src, peer), ("ours", ROOT / "src", ours)):
            loads.append(os.getloadavg()[0])
            acc.append(run_once(src, bundle, folder, tmp / f"out_{who}_{r}", args.threads))
            print(f"round {r}: {who} {acc[-1]:.1f} s", flush=True)
    mo, mp = float(np.median(ours)), float(np.median(peer))
    print(f"median: this checkout {mo:.1f} s, {args.peer_name} {mp:.1f} s, ratio {mo / mp:.3f}")
    if not args.no_doc:
        replace_section(HEADING, f"""{HEADING}

`medattn predict BUNDLE FOLDER --out OUT` on {args.n} PNG patches (96×96 SynthPCam, PCam attention CNN width
{args.width}), the whole CLI run timed in a subprocess, {args.rounds} rounds alternating this checkout and
`{args.peer_name}` (same bundle, same folder, {args.threads} torch threads); load average during the runs
{min(loads):.1f}–{max(loads):.1f} (the machine was shared with other jobs, so compare the ratio).

| checkout | median wall time (s) | rounds (s) |
|---|---:|---|
| this checkout | {mo:.1f} | {', '.join(f'{v:.1f}' for v in ours)} |
| {args.peer_name} | {mp:.1f} | {', '.join(f'{v:.1f}' for v in peer)} |
| **ratio this / {args.peer_name}** | **{mo / mp:.3f}** | |

Command: `python benchmarks/predict_folder.py --peer-src /tmp/before/src --peer-name "{args.peer_name}" --n {args.n}
--rounds {args.rounds}` (with `git worktree add /tmp/before <commit>`).
""")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
