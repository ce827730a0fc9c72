"""Benchmark: ``medattn slide`` against TIAToolbox 2.1's ``PatchPredictor`` and WSInfer 0.6 on one slide.

Same slide, same model weights (a medattn bundle's), same tile size at the same µm/px, same batch
size, DataLoader workers and torch threads. Each tool runs in its own fresh process — the peers in
their own venv (TIAToolbox's wheel pins ``torch<2.13``, so it is installed there with ``--no-deps``
beside the torch medattn uses; WSInfer in a second venv layered on the first) — and the tools
alternate over ``--reps`` repetitions:

* tiles/s: tiles predicted ÷ wall time of the slide run inside the process (model loading, tissue
  detection, reading, inference and each tool's outputs), after a warm-up run of the same tool on a
  16-patch slide in the same process, so that none pays its imports there; the cold process
  (start-up, imports, warm-up and run) is reported apart as the process wall time. The network's
  forward alone on random batches (same threads, batch) is the ceiling no tool can pass;
* peak RSS: the main process's own high-water mark (``VmHWM``), and the peak of the summed RSS of the process tree
  (main + DataLoader workers) sampled every 0.1 s with psutil;
* agreement: the heatmaps joined on the level-0 tile corner; max |Δ probability| over the tiles
  both tools predicted, and the tiles only one tool kept (their tissue masks differ).

The slide is a mosaic of real IDC patches (``../shared/data/breast_idc``, 50 px at 4 µm/px) on a
50 px grid with glass around, written as an Aperio pyramid by :mod:`medattn.infer.testslides`. The
bundle (``--bundle``; default a seeded registry ResNet-18) is copied with its test-time augmentation
off (``--tta`` keeps the 8 views in medattn and TIAToolbox and leaves WSInfer out). TIAToolbox gets
the bundle's network as a plain ``nn.Module`` in a ``ModelABC`` whose ``infer_batch`` does the
bundle's preparation (÷255, mean/std) and sigmoid; WSInfer gets it traced to TorchScript with a
``config.json`` of the same preparation. ``--check-resize MPP`` adds one untimed run of every tool
on the mosaic declared at ``MPP`` µm/px, so that each must resize every tile: it shows what part of
a heatmap difference comes from resampling.

Waits (up to ``--load-wait`` s) for the 1-minute load average to drop below ``--max-load`` before
each repetition and records the load. Skips when the data or the TIAToolbox venv is absent.
Rewrites its own section of docs/benchmarks.md.

    .venv/bin/python benchmarks/slide_peer_tiatoolbox.py [--bundle RUN/bundle] [--patches 3000] \\
        [--reps 3] [--threads 1] [--workers 1] [--check-resize 2.5] \\
        [--tia-python /work/bench-tia/venv/bin/python] [--wsinfer-python /work/bench-tia/venv-wsinfer/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import replace_section  # noqa: E402

HEADING = "## Whole slides: medattn slide vs TIAToolbox PatchPredictor and WSInfer, {arch} (slide_peer_tiatoolbox.py)"
DATA = ROOT.parent / "shared" / "data" / "breast_idc"

_MEDATTN_CHILD = """
import csv, json, sys, time
import numpy as np
import torch
torch.set_num_threads({threads})


def peak_rss_mb():  # this process's own high-water mark (ru_maxrss also counts the parent's before exec)
    return int(next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")).split()[1]) / 1024

from medattn.cli import main


def run(slide, out):
    return main(["slide", {bundle!r}, slide, "--out", out, "--batch-size", "{batch}", "--workers", "{workers}",
                 "--device", "cpu"])


run({warm!r}, {out!r} + "_warm")  # imports and first-call costs, as for the other tools
t0 = time.perf_counter()
code = run({slide!r}, {out!r})
run_s = time.perf_counter() - t0
rss = peak_rss_mb()
rows = list(csv.DictReader(open({out!r} + "/" + {stem!r} + "/tiles.csv")))
np.savez({heat!r}, xy=np.array([[int(r["x"]), int(r["y"])] for r in rows]).reshape(-1, 2),
         p=np.array([float(r["score"]) for r in rows]))
print(json.dumps({{"code": code, "run_s": run_s, "tiles": len(rows), "rss_mb": rss}}))
"""

_TIA_CHILD = """
import json, sys, time
import numpy as np
import torch
torch.set_num_threads({threads})


def peak_rss_mb():  # this process's own high-water mark (ru_maxrss also counts the parent's before exec)
    return int(next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")).split()[1]) / 1024

sys.path.insert(0, {src!r})  # medattn: only to rebuild the bundle's network from its weights
from tiatoolbox.models.engine.patch_predictor import PatchPredictor
from tiatoolbox.models.models_abc import ModelABC
from medattn.bundle.format import build_model, read_bundle_files


class BundleNet(ModelABC):
    def __init__(self, net, mean, std, views):
        super().__init__()
        self.net, self.views = net, views
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x):
        return self.net(x)

    @staticmethod
    def infer_batch(model, batch_data, *, device="cpu"):
        m = getattr(model, "module", model)
        m.eval()
        with torch.inference_mode():
            # NCHW contiguous, as TIAToolbox's own models' infer_batch makes it (a channels-last view
            # changes the convolutions' speed: about 2x faster for a small CNN, slower for a ResNet-18)
            x = torch.as_tensor(batch_data).to(device).permute(0, 3, 1, 2).contiguous().float().div(255)
            x = (x - m.mean) / m.std
            p = 0
            for k in range(m.views):  # the 8 symmetries of the square when the bundle asks for them
                v = x.flip(-1) if k >= 4 else x
                p = p + torch.sigmoid(m(torch.rot90(v, k % 4, (2, 3)) if k % 4 else v)[:, 0])
            p = p / m.views
        return torch.stack([1 - p, p], 1).cpu().numpy()


def run(slide, save_dir):
    meta, weights = read_bundle_files({bundle!r})
    model = BundleNet(build_model(meta, weights, {bundle!r}), meta["mean"], meta["std"], 8 if meta.get("tta") else 1)
    size = int(meta["input_size"])
    engine = PatchPredictor(model=model, batch_size={batch}, num_workers={workers}, device="cpu", verbose=False)
    return engine.run([slide], patch_mode=False, input_resolutions=[{{"units": "mpp", "resolution": {model_mpp}}}],
                      patch_input_shape=(size, size), stride_shape=(size, size), save_dir=save_dir, overwrite=True,
                      output_type="zarr", return_probabilities=True)


run({warm!r}, {out!r} + "_warm")  # imports and first-call costs, as for the other tools
t0 = time.perf_counter()
out = run({slide!r}, {out!r})
run_s = time.perf_counter() - t0
rss = peak_rss_mb()
import zarr
z = zarr.open(str(next(iter(out.values()))), mode="r")
xy = np.rint(np.asarray(z["coordinates"])[:, :2] * {scale}).astype(int)  # model-resolution -> level 0
np.savez({heat!r}, xy=xy, p=np.asarray(z["probabilities"])[:, 1])
print(json.dumps({{"code": 0, "run_s": run_s, "tiles": len(xy), "rss_mb": rss}}))
"""

_WSINFER_CHILD = """
import csv, json, os, time
import numpy as np
import torch
torch.set_num_threads({threads})


def peak_rss_mb():  # this process's own high-water mark (ru_maxrss also counts the parent's before exec)
    return int(next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")).split()[1]) / 1024

from wsinfer.modellib.models import LocalModelTorchScript
from wsinfer.modellib.run_inference import run_inference
from wsinfer.patchlib import segment_and_patch_directory_of_slides
from wsinfer.write_geojson import write_geojsons
from wsinfer_zoo.client import ModelConfiguration


def run(slide, results):
    wsi_dir = results + "_slide"  # WSInfer takes a folder holding only slides
    os.makedirs(wsi_dir)
    os.symlink(slide, os.path.join(wsi_dir, os.path.basename(slide)))
    os.makedirs(results)
    model = LocalModelTorchScript(config=ModelConfiguration.from_dict(json.load(open({config!r}))),
                                  model_path={torchscript!r})
    segment_and_patch_directory_of_slides(wsi_dir=wsi_dir, save_dir=results, patch_size_px={size},
                                          patch_spacing_um_px={model_mpp})
    run_inference(wsi_dir=wsi_dir, results_dir=results, model_info=model, batch_size={batch},
                  num_workers={workers})
    from pathlib import Path
    write_geojsons(list(Path(results, "model-outputs-csv").glob("*.csv")), Path(results), max({workers}, 1))


os.environ["WSINFER_FORCE_CPU"] = "1"
run({warm!r}, {out!r} + "_warm")  # imports and first-call costs, as for the other tools
t0 = time.perf_counter()
run({slide!r}, {out!r})
run_s = time.perf_counter() - t0
rss = peak_rss_mb()
rows = list(csv.DictReader(open({out!r} + "/model-outputs-csv/" + {stem!r} + ".csv")))
np.savez({heat!r}, xy=np.array([[int(r["minx"]), int(r["miny"])] for r in rows]).reshape(-1, 2),
         p=np.array([float(r["prob_{positive}"]) for r in rows]))
print(json.dumps({{"code": 0, "run_s": run_s, "tiles": len(rows), "rss_mb": rss}}))
"""

_FORWARD_CHILD = """
import json, time
import torch
torch.set_num_threads({threads})


def peak_rss_mb():  # this process's own high-water mark (ru_maxrss also counts the parent's before exec)
    return int(next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")).split()[1]) / 1024

from medattn.bundle.format import build_model, read_bundle_files
meta, weights = read_bundle_files({bundle!r})
net = build_model(meta, weights, {bundle!r}).eval()
x = torch.randn({batch}, 3, {size}, {size})
with torch.inference_mode():
    net(x)
    t0, n = time.perf_counter(), 0
    while n < {tiles}:
        torch.sigmoid(net(x))
        n += {batch}
run_s = time.perf_counter() - t0
print(json.dumps({{"code": 0, "run_s": run_s, "tiles": n, "rss_mb": peak_rss_mb()}}))
"""

TOOLS = {"medattn": "`medattn slide`",
         "medattn_plain": "`medattn slide`, bundle without its OOD and conformal models (no per-tile trust)",
         "tia": "TIAToolbox 2.1.3 `PatchPredictor`", "wsinfer": "WSInfer 0.6.1",
         "forward": "the network's forward alone (medattn venv, random batches)"}


def idc_mosaic(path: Path, n: int, mpp: float = 4.0, margin: int = 100) -> tuple[Path, int]:
    """The first ``n`` IDC patches (by name) on a 50 px grid with ``margin`` px of glass around,
    written as an Aperio pyramid at ``mpp`` µm/px. Returns ``(path, patches)``."""
    from PIL import Image

    from medattn.infer.testslides import IDC_NAME, write_pyramid

    files = sorted((f for f in DATA.rglob("*.png") if IDC_NAME.search(f.name)), key=lambda f: f.name)[:n]
    cols = int(np.ceil(np.sqrt(len(files))))
    rows = int(np.ceil(len(files) / cols))
    canvas = np.full((rows * 50 + 2 * margin, cols * 50 + 2 * margin, 3), 242, np.uint8)
    for i, f in enumerate(files):
        a = np.asarray(Image.open(f).convert("RGB"))[:50, :50]
        r, c = divmod(i, cols)
        canvas[margin + 50 * r:margin + 50 * r + a.shape[0], margin + 50 * c:margin + 50 * c + a.shape[1]] = a
    return write_pyramid(path, canvas, mpp), len(files)


def bench_bundle(src: Path | None, dst: Path, tta: bool, arch: str = "resnet18",
                 width: float | None = None) -> dict[str, Any]:
    """Copy ``src`` to ``dst`` with its test-time augmentation on or off; its bundle.json. Without
    ``src``: the registry's ``arch`` (``width`` when given) with seeded weights at IDC's 50 px and
    4 µm/px (speed does not depend on the weights; agreement is better judged with a trained bundle)."""
    import torch

    from medattn.bundle.format import save_bundle, update_bundle_json
    from medattn.models import create_model

    if dst.exists():
        shutil.rmtree(dst)
    if src is None:
        torch.manual_seed(0)
        meta = {"task": "binary", "class_names": ["non-IDC", "IDC"], "input_size": 50, "in_chans": 3,
                "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "threshold": 0.5,
                "recipe": {"data": {"mpp": 4.0}}}
        kwargs = {} if width is None else {"width": width}
        save_bundle(create_model(arch, num_classes=1, **kwargs), meta, dst)
    else:
        shutil.copytree(src, dst)
    return update_bundle_json(dst, lambda m: {**m, "tta": bool(tta)})


def wsinfer_model(bundle: Path, out: Path, model_mpp: float) -> tuple[Path, Path]:
    """The bundle's network traced to TorchScript (WSInfer loads only that) and a WSInfer
    ``config.json`` with the bundle's preparation: ``(model.pt, config.json)``."""
    import torch

    from medattn.bundle.format import build_model, read_bundle_files

    meta, weights = read_bundle_files(bundle)
    net = build_model(meta, weights, str(bundle)).eval()
    size = int(meta["input_size"])
    out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.jit.trace(net, torch.zeros(1, 3, size, size)).save(str(out / "model.pt"))
    config = {"spec_version": "1.0", "architecture": meta["architecture"]["name"], "num_classes": 1,
              "class_names": [meta["class_names"][-1]], "patch_size_pixels": size, "spacing_um_px": model_mpp,
              "transform": [{"name": "Resize", "arguments": {"size": size}}, {"name": "ToTensor"},
                            {"name": "Normalize", "arguments": {"mean": meta["mean"], "std": meta["std"]}}]}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out / "model.pt", out / "config.json"


def wait_for_load(max_load: float, budget: float) -> float:
    """Sleep until the 1-minute load average is below ``max_load`` or ``budget`` s have passed."""
    end = time.monotonic() + budget
    while os.getloadavg()[0] >= max_load and time.monotonic() < end:
        time.sleep(20)
    return os.getloadavg()[0]


def run_child(python: str, code: str, env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run ``code`` in a fresh ``python``; its JSON result plus process wall time and the peak of
    the process tree's summed RSS (sampled every 0.1 s)."""
    import psutil

    t0 = time.perf_counter()
    with open(log, "w") as fh:
        p = subprocess.Popen([python, "-c", code], stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        proc, peak = psutil.Process(p.pid), 0
        while p.poll() is None:
            total = 0
            try:
                for q in [proc, *proc.children(recursive=True)]:
                    total += q.memory_info().rss
            except psutil.Error:
                pass
            peak = max(peak, total)
            time.sleep(0.1)
    wall = time.perf_counter() - t0
    lines = log.read_text().strip().splitlines()
    if p.returncode != 0 or not lines or not lines[-1].startswith("{") or json.loads(lines[-1])["code"] != 0:
        raise SystemExit(f"{python} child failed (exit {p.returncode}); see {log}")
    res = json.loads(lines[-1])
    return {**res, "wall_s": wall, "tree_rss_mb": peak / 2**20, "tiles_s": res["tiles"] / res["run_s"]}


def agreement(a: Path, b: Path) -> dict[str, Any]:
    """Two heatmaps (``.npz`` of level-0 tile corners ``xy`` and P(positive) ``p``) joined on the
    corner: max, mean and 99th percentile of |Δp| over the common tiles, the worst tile, and the
    tiles only one of them has."""
    ha, hb = ({(int(x), int(y)): float(p) for (x, y), p in zip(z["xy"], z["p"], strict=True)}
              for z in (np.load(a), np.load(b)))
    common = sorted(set(ha) & set(hb))
    d = np.array([abs(ha[k] - hb[k]) for k in common]) if common else np.array([np.nan])
    return {"common": len(common), "max_abs": float(np.max(d)), "mean_abs": float(np.mean(d)),
            "p99_abs": float(np.quantile(d, 0.99)), "worst_tile": common[int(np.argmax(d))] if common else None,
            "only_a": len(set(ha) - set(hb)), "only_b": len(set(hb) - set(ha))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=None,
                    help="a medattn IDC patch-classifier bundle (default: a seeded registry ResNet-18 at 50 px)")
    ap.add_argument("--tia-python", default="/work/bench-tia/venv/bin/python",
                    help="python of the venv holding tiatoolbox 2.1 (see the section's install note)")
    ap.add_argument("--wsinfer-python", default="/work/bench-tia/venv-wsinfer/bin/python",
                    help="python of the venv holding wsinfer 0.6 (skipped when absent or with --tta)")
    ap.add_argument("--arch", default="resnet18", help="without --bundle: the registry network")
    ap.add_argument("--width", type=float, default=None, help="without --bundle: the network's width, if it has one")
    ap.add_argument("--patches", type=int, default=3000, help="IDC patches in the mosaic slide")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1, help="DataLoader workers of every tool")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--tta", action="store_true", help="keep the bundle's 8-view test-time augmentation")
    ap.add_argument("--max-load", type=float, default=2.5)
    ap.add_argument("--load-wait", type=float, default=300, help="seconds to wait for the load per repetition")
    ap.add_argument("--check-resize", type=float, default=None, metavar="MPP",
                    help="also one untimed run of each tool on the slide declared at MPP µm/px (tiles resized)")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "slide_peer")
    ap.add_argument("--from-result", action="store_true",
                    help="only rewrite the docs section from OUT/result.json of a finished run")
    args = ap.parse_args()
    if args.from_result:
        res = json.loads((args.out / "result.json").read_text())
        meta = json.loads((args.out / "bundle" / "bundle.json").read_text())
        section = _section(argparse.Namespace(**res["args"]), meta, res["model_mpp"], res["n_patches"], res["tools"],
                           res["runs"], res["agreement"], res["resize"], res["seconds"])
        replace_section(_heading(meta), section)
        print(section)
        return 0
    if not DATA.is_dir():
        print(f"skipped: {DATA} is absent")
        return 0
    if not Path(args.tia_python).is_file():
        print(f"skipped: no TIAToolbox venv at {args.tia_python}")
        return 0
    t_start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    meta = bench_bundle(args.bundle, args.out / "bundle", args.tta, args.arch, args.width)
    model_mpp = float(meta.get("mpp") or meta["recipe"]["data"]["mpp"])
    size = int(meta["input_size"])
    slide, n_patches = idc_mosaic(args.out / "idc_mosaic.svs", args.patches, mpp=model_mpp)
    warm, _ = idc_mosaic(args.out / "warm_up.svs", 16, mpp=model_mpp)
    pythons = {"medattn": sys.executable, "tia": args.tia_python}  # the tools compared; "forward" runs apart
    if meta.get("ood") or meta.get("conformal"):  # medattn slide scores every tile's trust with them
        pythons["medattn_plain"] = sys.executable
        from medattn.bundle.format import update_bundle_json

        shutil.rmtree(args.out / "bundle_plain", ignore_errors=True)
        shutil.copytree(args.out / "bundle", args.out / "bundle_plain")
        update_bundle_json(args.out / "bundle_plain",
                           lambda m: {k: v for k, v in m.items() if k not in ("ood", "conformal")})
    if Path(args.wsinfer_python).is_file() and not args.tta:
        pythons["wsinfer"] = args.wsinfer_python
        torchscript, config = wsinfer_model(args.out / "bundle", args.out / "wsinfer_model", model_mpp)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "PYTHONPATH": str(ROOT / "src"), "TQDM_DISABLE": "1"}

    def run_tool(tool: str, tag: str, slide_path: Path) -> dict[str, Any]:
        out = args.out / f"{tool}_{tag}"
        for d in (out, Path(f"{out}_warm"), Path(f"{out}_slide"), Path(f"{out}_warm_slide")):
            shutil.rmtree(d, ignore_errors=True)
        fields = {"threads": args.threads, "batch": args.batch_size, "workers": args.workers,
                  "bundle": str(args.out / ("bundle_plain" if tool == "medattn_plain" else "bundle")), "warm": str(warm), "slide": str(slide_path), "out": str(out),
                  "stem": slide_path.stem, "heat": str(args.out / f"{tool}_{tag}.npz"), "model_mpp": model_mpp,
                  "scale": model_mpp / float(_slide_mpp(slide_path)), "src": str(ROOT / "src"), "size": size,
                  "positive": meta["class_names"][-1]}
        if tool == "wsinfer":
            fields.update(torchscript=str(torchscript), config=str(config))
        fields["tiles"] = min(args.patches, 1024)
        code = {"medattn": _MEDATTN_CHILD, "medattn_plain": _MEDATTN_CHILD, "tia": _TIA_CHILD, "wsinfer": _WSINFER_CHILD,
                "forward": _FORWARD_CHILD}[tool].format(**fields)
        return run_child(pythons.get(tool, sys.executable), code, env, args.out / f"{tool}_{tag}.log")

    tools = list(pythons)
    peers = [t for t in tools if t in ("tia", "wsinfer")]
    runs: list[dict[str, Any]] = []
    for rep in range(args.reps):
        load = wait_for_load(args.max_load, args.load_wait)
        order = tools[rep % len(tools):] + tools[:rep % len(tools)]
        row: dict[str, Any] = {"rep": rep + 1, "load_before": load, "order": order}
        for tool in order:
            row[f"load_{tool}"] = os.getloadavg()[0]
            row[tool] = run_tool(tool, str(rep), slide)
            print(rep + 1, tool, {k: round(v, 3) if isinstance(v, float) else v for k, v in row[tool].items()},
                  flush=True)
        row["load_forward"] = os.getloadavg()[0]
        row["forward"] = run_tool("forward", str(rep), slide)
        row["ratio"] = {t: row["medattn"]["tiles_s"] / row[t]["tiles_s"] for t in peers}
        if "medattn_plain" in tools:
            row["ratio_plain"] = {t: row["medattn_plain"]["tiles_s"] / row[t]["tiles_s"] for t in peers}
        runs.append(row)
    last = args.reps - 1
    agree = {t: agreement(args.out / f"medattn_{last}.npz", args.out / f"{t}_{last}.npz") for t in peers}
    print("agreement", agree, flush=True)
    resize: dict[str, Any] = {}
    if args.check_resize:
        declared, _ = idc_mosaic(args.out / "idc_mosaic_declared.svs", args.patches, mpp=args.check_resize)
        for t in ["medattn", *peers]:
            run_tool(t, "resize", declared)
        resize = {t: agreement(args.out / "medattn_resize.npz", args.out / f"{t}_resize.npz") for t in peers}
        print("resize", resize, flush=True)
    seconds = time.perf_counter() - t_start
    result = {"runs": runs, "agreement": agree, "resize": resize, "tools": tools, "model_mpp": model_mpp,
              "n_patches": n_patches, "seconds": seconds,
              "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    (args.out / "result.json").write_text(json.dumps(result, indent=2, default=str))
    section = _section(args, meta, model_mpp, n_patches, tools, runs, agree, resize, seconds)
    replace_section(_heading(meta), section)
    print(section)
    return 0


def _heading(meta: dict[str, Any]) -> str:
    arch = meta["architecture"]
    width = (arch.get("kwargs") or {}).get("width")
    return HEADING.format(arch=f"{arch['name']}{f' ×{width:g}' if width else ''}, {int(meta['input_size'])} px")


def _slide_mpp(path: Path) -> float:
    from medattn.infer.slide_io import open_slide

    r = open_slide(path)
    try:
        return float(r.mpp or 0) or 1.0
    finally:
        r.close()


def _section(args: argparse.Namespace, meta: dict[str, Any], model_mpp: float, n_patches: int, tools: list[str],
             runs: list[dict[str, Any]], agree: dict[str, Any], resize: dict[str, Any], seconds: float) -> str:
    """The docs/benchmarks.md section of one run."""
    med = lambda key, tool: statistics.median(r[tool][key] for r in runs)  # noqa: E731
    ok = lambda c: "yes" if c else "**no**"  # noqa: E731
    net = "--bundle BUNDLE" if args.bundle else f"--arch {args.arch}" + (f" --width {args.width:g}" if args.width else "")
    cmd = (f".venv/bin/python benchmarks/slide_peer_tiatoolbox.py {net} --patches {args.patches} "
           f"--reps {args.reps} --threads {args.threads} --workers {args.workers} --batch-size {args.batch_size}"
           + (" --tta" if args.tta else "") + (f" --check-resize {args.check_resize:g}" if args.check_resize else ""))
    table = "\n".join(
        f"| {TOOLS[t]} | {runs[-1][t]['tiles']} | {med('run_s', t):.1f} | **{med('tiles_s', t):.1f}** | "
        f"{med('wall_s', t):.1f} | {med('rss_mb', t):.0f} | {med('tree_rss_mb', t):.0f} |" for t in tools)
    table += (f"\n| {TOOLS['forward']} | {runs[-1]['forward']['tiles']} | {med('run_s', 'forward'):.1f} | "
              f"{med('tiles_s', 'forward'):.1f} | {med('wall_s', 'forward'):.1f} | {med('rss_mb', 'forward'):.0f} | — |")
    goals = []
    ceiling = med("tiles_s", "forward")
    for t in (t for t in tools if t in ("tia", "wsinfer")):
        ratio = statistics.median(r["ratio"][t] for r in runs)
        a = agree[t]
        each = ", ".join(f"{r['ratio'][t]:.2f}" for r in runs)
        goals += [f"| tiles/s, medattn ÷ {TOOLS[t]} (median of per-repetition ratios: {each}) | **{ratio:.2f}×** | ≥ 1.5× | {ok(ratio >= 1.5)} |",
                  f"| max \\|Δp\\| medattn vs {TOOLS[t]}, {a['common']} common tiles | **{a['max_abs']:.1e}** "
                  f"(mean {a['mean_abs']:.1e}) | ≤ 1e-4 | {ok(a['max_abs'] <= 1e-4)} |",
                  f"| tiles only medattn / only {TOOLS[t]} kept (tissue masks) | {a['only_a']} / {a['only_b']} | — | — |"]
        if "medattn_plain" in tools:
            plain = statistics.median(r["ratio_plain"][t] for r in runs)
            each = ", ".join(f"{r['ratio_plain'][t]:.2f}" for r in runs)
            goals.insert(-2, f"| tiles/s, medattn without per-tile trust ÷ {TOOLS[t]} ({each}) | **{plain:.2f}×** | "
                             f"≥ 1.5× | {ok(plain >= 1.5)} |")
    goals.append(f"| bound on any ratio vs TIAToolbox: the forward alone ÷ TIAToolbox | {ceiling / med('tiles_s', 'tia'):.2f}× "
                 "| — | — |")
    trust_txt = ""
    if "medattn_plain" in tools:
        cost, total = med("run_s", "medattn") - med("run_s", "medattn_plain"), med("run_s", "medattn")
        trust_txt = f"""

`medattn slide` scores every tile's trust (`medattn.trust.assess.assess`: the OOD score from features
captured by hooks during the prediction's own forward pass, the conformal prediction set) and writes them
to tiles.csv; the peers do none of this. The row without the bundle's OOD and conformal models runs the
same command on a copy of the bundle without them: the trust costs {cost:.1f} s of the {total:.1f} s
slide run here (Gaussian scores over the pooled features of every stage, and the sets)."""
    per_rep = "; ".join(f"rep {r['rep']} ({' → '.join(r['order'])}): load "
                        + " / ".join(f"{r['load_' + t]:.1f}" for t in r["order"]) for r in runs)
    resize_txt = ""
    if resize and "tia" in resize:
        size_l0 = int(meta["input_size"]) * model_mpp / args.check_resize
        resize_txt = (f"\n\nResampling check (`--check-resize {args.check_resize:g}`, untimed): the same mosaic "
                      f"declared at {args.check_resize:g} µm/px, so each {int(meta['input_size'])} px model tile is a "
                      f"{size_l0:.1f} px level-0 region that every tool must resize: "
                      + "; ".join(f"{TOOLS[t]}: max \\|Δp\\| **{a['max_abs']:.1e}** (mean {a['mean_abs']:.1e}, "
                                  f"{a['common']} common tiles)" for t, a in resize.items()) + ". "
                      + _RESIZE_WHY.format(ratio=round(size_l0 / int(meta["input_size"]), 3), src=size_l0,
                                           dst=int(meta["input_size"])))
    return f"""{_heading(meta)}

Command: `{cmd}` ({seconds:.0f} s; CPU, {args.threads} torch thread(s) and OMP_NUM_THREADS={args.threads} in every
tool, {args.workers} DataLoader worker(s), batch {args.batch_size}, on a 2-core machine shared with other jobs).
Slide: a mosaic of {n_patches} real IDC patches (`../shared/data/breast_idc`) on a 50 px grid with glass around,
an Aperio JPEG pyramid at {model_mpp:g} µm/px. Model: the bundle's `{meta['architecture']['name']}`
({int(meta['input_size'])} px at {model_mpp:g} µm/px, test-time augmentation
{'on: 8 views in medattn and TIAToolbox' if args.tta else 'off'}), the same weights in every tool. Each tool
ran {args.reps}× in a fresh process, the tools alternating; medians:

| tool | tiles | slide run s | tiles/s | process wall s | peak RSS main MB | peak RSS tree MB |
|---|---|---|---|---|---|---|
{table}

| measure | value | goal | met |
|---|---|---|---|
{chr(10).join(goals)}{trust_txt}

Load (1-minute average when each tool started; goal < {args.max_load:g}, waited up to {args.load_wait:g} s
per repetition): {per_rep}. "slide run" is the wall time inside the process, after a warm-up run of the
same tool on a 16-patch slide (imports, first calls), from loading the model to the last output written:
medattn writes tiles.csv, heatmap.npy/.tif, overlay.png, slide.geojson, summary.json and cohort.csv;
TIAToolbox its zarr (coordinates, probabilities, predictions); WSInfer its patch HDF5, tissue-mask
images, CSV and GeoJSON. "process wall" is the whole cold process: start-up, imports, warm-up and run.
RSS "main" is the tool's process's own high-water mark (`VmHWM`; `ru_maxrss` would also count the
benchmark's own process, which it inherits across fork + exec); "tree" the peak of the summed RSS of that
process and its DataLoader workers (shared pages counted in each), sampled every 0.1 s.{resize_txt}
{_NOTES if resize else _NOTES_SEE}"""


_RESIZE_WHY = """Why: TIAToolbox 2.1.3 reads each tile with
`read_bounds(..., coord_space="resolution")`, whose `imresize(output_size=...)` takes the scale factor as
input ÷ output ({ratio:g} for {src:g} → {dst} px), so `select_cv2_interpolation` picks its enlarging branch and the tile is
shrunk with `cv2.INTER_CUBIC`, without anti-aliasing (checked on single tiles: cv2 bicubic of the same
level-0 region reproduces TIAToolbox's pixels exactly; `INTER_AREA` does not). medattn shrinks with
torchvision's antialiased bilinear `Resize` on uint8 (the bundle's `Preparation`, the transform it is
trained and evaluated with) and WSInfer with PIL's antialiased bilinear, which agree to uint8 rounding.
medattn's side is the right one: a shrink needs a low-pass filter, and the tile must be prepared as in
training; TIAToolbox's aliased tiles move this model's probabilities by up to the max above. At the
slide's own scale (the main table) no tool resizes and the three heatmaps agree to float rounding."""

_NOTES_SEE = """
How the peers were installed and driven, their tissue masks and the input-layout note: see the section
of this benchmark run with `--check-resize`.
"""

_NOTES = """
How the peers were installed (a separate venv, not medattn dependencies): `python3.11 -m venv`,
`pip install torch==2.14.1 torchvision==0.29.1` (from local disk), `pip install tiatoolbox==2.1.3 --no-deps`
(its wheel pins `torch<2.13`, `torchvision<0.28`), then, found by importing
`tiatoolbox.models.engine.patch_predictor` until it imported, each within tiatoolbox's own bounds:
pyyaml, timm, opencv-python, umap-learn, matplotlib, pandas, shapely, dask, psutil, requests, tifffile,
zarr, scikit-image, openslide-python + openslide-bin, SimpleITK, defusedxml, imagecodecs,
universal_pathlib (imported as `upath`; the PyPI package named `upath` is another one) and transformers:
20 packages besides torch, ~5.5 GB with torch's CUDA wheels. pip warns that torch 2.14.1 and
torchvision 0.29.1 break tiatoolbox's pins; its `PatchPredictor` WSI path ran without error. TIAToolbox
gets the bundle's network as a plain `nn.Module` inside a `ModelABC` whose `infer_batch` does the
bundle's preparation (÷255, mean/std) and sigmoid. WSInfer 0.6.1 (Feb 2024) went into a second venv
that sees the first one's packages through a `.pth` file: `pip install wsinfer==0.6.1` brings
opencv-python-headless 5 (kept out of the TIAToolbox venv, where it would replace cv2 4.x), and its
`import wsinfer` needs zarr 2 (`zarr.storage.KVStore`), so `zarr<3`, `tiffslide<2.5` and
`tifffile<2025.5` (the last that read zarr 2) were pinned there. WSInfer loads only TorchScript:
the bundle's network traced with `torch.jit.trace`, with a WSInfer `config.json` of the bundle's
preparation (Resize to the input size — a no-op at 50 px —, ToTensor, Normalize); it was driven
through its Python functions (`segment_and_patch_directory_of_slides`, `run_inference`,
`write_geojsons`), as its `run` command does, because that command's `--model` choice loads the model
zoo registry from the network. All three read slides through OpenSlide. Tissue masks differ: medattn
Otsu on saturation with hysteresis, tiles half covered (`--min-tissue 0.5`); TIAToolbox Otsu on a
1.25× thumbnail, any overlap (`min_mask_ratio=0`); WSInfer a fixed threshold (7/255) on the
median-filtered saturation with closing, tiles whose centre is in tissue. Probabilities are compared
on the tiles both tools kept.

Input layout matters as much as the pipeline here: every tool is fed NCHW-contiguous batches
(TIAToolbox's own models' `infer_batch` makes them contiguous; medattn's `Preparation` and WSInfer's
`ToTensor` do too). A channels-last view of the same batch (what `permute` of an NHWC uint8 batch gives
without `.contiguous()`) ran `patch_cnn_baseline ×0.25` about 1.9× faster and the ResNet-18 about 20%
slower on this CPU (one thread, batch 32), which an earlier run of this benchmark without `.contiguous()`
showed as TIAToolbox at 1.8× medattn's tiles/s on the small network: choosing the memory format per
network would move the forward ceiling of a small network more than any pipeline change.
"""


if __name__ == "__main__":
    sys.exit(main())
