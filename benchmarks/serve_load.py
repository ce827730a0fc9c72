"""Load test of ``medattn serve`` on loopback: valid and malformed uploads, concurrency, latency.

Starts ``medattn serve`` (uvicorn) in a subprocess, sends N requests from C concurrent clients
(a share of them malformed: random bytes, truncated PNG, 30000×30000 PNG bomb, text file, empty
file, oversized upload), and checks: zero 5xx, every malformed request answered 4xx, every valid
one 200, the server's peak memory. Throughput is compared with the in-process predictor
(decode + predict, batches of the server's max batch) in the same run. Rewrites its own section
of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
from _doc import replace_section  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
HEADING = "## Serving: REST API under load (serve_load.py)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_peak_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MB, from /proc (0 when unavailable)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0, 0.0
    vals = {k: float(v.split()[0]) / 1024 for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(.*)$", text, re.M)}
    return vals.get("VmRSS", 0.0), vals.get("VmHWM", 0.0)


def make_bundle(folder: Path, width: float) -> Path:
    import torch

    from medattn.bundle import save_bundle
    from medattn.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from medattn.models import create_model

    torch.manual_seed(0)
    model = create_model("patch_cnn_attention", width=width)
    meta = {"task": "binary", "class_names": ["normal", "tumour"], "input_size": 96, "in_chans": 3,
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    return save_bundle(model, meta, folder / "bundle")


def valid_images(n: int) -> list[bytes]:
    from medattn.data.synthetic import make_pcam_patch
    from medattn.serve.samples import png_bytes

    rng = np.random.default_rng(0)
    return [png_bytes(make_pcam_patch(rng, positive=i % 2 == 0)[0]) for i in range(n)]


def in_process_throughput(bundle: Path, images: list[bytes], batch: int, seconds: float) -> float:
    """Images/s of decode + ``Predictor.predict`` in this process, batches of ``batch``."""
    from medattn.bundle import load_bundle, read_image

    pred = load_bundle(bundle, device="cpu")
    pred.infer([read_image(b) for b in images[:batch]])  # warm-up
    done, t0, i = 0, time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        chunk = [images[(i + k) % len(images)] for k in range(batch)]
        pred.infer([read_image(b) for b in chunk])
        done += batch
        i += batch
    return done / (time.perf_counter() - t0)


async def run_load(url: str, plan: list[tuple[str, str, bytes]], concurrency: int) -> list[tuple[str, int, float]]:
    import httpx

    out: list[tuple[str, int, float]] = []
    it = iter(enumerate(plan))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        async def worker() -> None:
            for _, (kind, name, data) in it:
                t = time.perf_counter()
                try:
                    r = await client.post("/v1/predict", files={"file": (name, data, "application/octet-stream")})
                    code = r.status_code
                except httpx.HTTPError:
                    code = -1  # connection dropped: counted as a failure
                out.append((kind, code, time.perf_counter() - t))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--malformed", type=float, default=0.10, help="share of malformed requests")
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--width", type=float, default=0.5, help="channel multiplier of the PCam CNN")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the server and of the in-process peer")
    ap.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = ap.parse_args()

    import torch

    from medattn.serve.samples import malformed_uploads

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="medattn_serve_load_"))
    bundle = make_bundle(tmp, args.width)
    images = valid_images(64)
    max_upload = 1 << 20
    bad = malformed_uploads(images[0], max_upload)
    rng = np.random.default_rng(0)
    kinds = list(bad)
    plan: list[tuple[str, str, bytes]] = []
    for i in range(args.requests):
        if rng.random() < args.malformed:
            k = kinds[len([p for p in plan if p[0] != "valid"]) % len(kinds)]
            plan.append((k, *bad[k]))
        else:
            plan.append(("valid", f"patch_{i}.png", images[i % len(images)]))

    before = in_process_throughput(bundle, images, args.max_batch, seconds=6.0)
    port = _free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": str(args.threads)}
    cmd = [sys.executable, "-m", "medattn.cli", "serve", str(bundle), "--host", "127.0.0.1", "--port", str(port),
           "--no-ui", "--max-upload-mb", "1", "--max-files", "4", "--max-batch", str(args.max_batch),
           "--max-wait-ms", "5"]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        for _ in range(600):
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None:
                print(server.stderr.read() if server.stderr else "", file=sys.stderr)
                return 1
            time.sleep(0.2)
        asyncio.run(run_load(url, plan[:32], args.concurrency))  # warm-up
        rss0, _ = _rss_peak_mb(server.pid)
        t0 = time.perf_counter()
        res = asyncio.run(run_load(url, plan, args.concurrency))
        wall = time.perf_counter() - t0
        rss1, peak = _rss_peak_mb(server.pid)
        stats = httpx.get(url + "/readyz", timeout=5).json()
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
    inproc = (before + in_process_throughput(bundle, images, args.max_batch, seconds=6.0)) / 2

    codes = Counter(c for _, c, _ in res)
    five = sum(n for c, n in codes.items() if c >= 500 or c < 0)
    valid = [(c, t) for k, c, t in res if k == "valid"]
    bad_res = [(k, c) for k, c, _ in res if k != "valid"]
    bad_ok = all(400 <= c < 500 for _, c in bad_res)
    valid_ok = all(c == 200 for c, _ in valid)
    lat = np.array([t for _, t in valid]) * 1000
    thr = len(valid) / wall
    by_kind = {k: sorted({c for kk, c in bad_res if kk == k}) for k in kinds}
    summary = {
        "requests": len(res), "valid": len(valid), "malformed": len(bad_res), "wall_s": wall,
        "throughput": thr, "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
        "inproc": inproc, "ratio": thr / inproc, "five_xx": five, "codes": dict(codes), "bad_ok": bad_ok,
        "valid_ok": valid_ok, "rss_start": rss0, "rss_end": rss1, "rss_peak": peak,
        "mean_batch": stats.get("mean_batch"), "by_kind": by_kind,
    }
    for k, v in summary.items():
        print(f"{k}: {v}")
    if not args.no_doc:
        write_doc(summary, args)
    return 0 if five == 0 and bad_ok and valid_ok else 1


def write_doc(s: dict, args: argparse.Namespace) -> None:
    kinds = ", ".join(f"{k} → {'/'.join(map(str, v))}" for k, v in s["by_kind"].items())
    section = f"""{HEADING}

`medattn serve` (uvicorn, one process, micro-batching up to {args.max_batch}, 5 ms max wait) on loopback,
serving a PCam attention CNN (width {args.width}, 96×96 input), driven by an httpx client in another
process with {args.concurrency} concurrent connections on the same 2 cores. {s['requests']} requests to
`POST /v1/predict`, {s['malformed']} of them malformed ({kinds}).
The peer is the in-process predictor (`load_bundle(...).predict`, PNG decode + preprocessing + forward)
at the same batch size ({args.max_batch}) and the same torch threads ({args.threads}), measured just
before and just after the load (mean), in the same run. The machine was shared with other jobs
(load average well above 2), so absolute figures are low; the ratio is the comparable number.

| measure | value |
|---|---:|
| valid requests | {s['valid']} (all 200: {'yes' if s['valid_ok'] else 'NO'}) |
| 5xx / dropped connections | {s['five_xx']} |
| malformed answered 4xx | {'all' if s['bad_ok'] else 'NOT ALL'} ({s['malformed']}) |
| throughput (valid images/s) | {s['throughput']:.1f} |
| in-process predictor, batch {args.max_batch} (images/s) | {s['inproc']:.1f} |
| **throughput ratio server / in-process** | **{s['ratio']:.2f}** |
| latency p50 / p99 (ms, valid) | {s['p50_ms']:.0f} / {s['p99_ms']:.0f} |
| mean micro-batch | {s['mean_batch']} |
| server RSS after warm-up → end (peak), MB | {s['rss_start']:.0f} → {s['rss_end']:.0f} ({s['rss_peak']:.0f}) |

Command: `.venv/bin/python benchmarks/serve_load.py --requests {args.requests} --concurrency {args.concurrency} --malformed {args.malformed}`
"""
    replace_section(HEADING, section)


if __name__ == "__main__":
    sys.exit(main())
