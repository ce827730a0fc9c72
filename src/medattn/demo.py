"""``medattn demo``: SynthPCam → two recipe runs → paired comparison, CAM localisation, report.

The demo is the user's path in miniature: it writes SynthPCam in the real PCam HDF5 layout, trains
the shipped ``pcam-baseline`` and ``pcam-attention`` recipes (with the demo's sizes as overrides)
through :func:`medattn.engine.runner.train_run` exactly as ``medattn train`` does, compares the two
runs with ``medattn compare``'s code, and scores how much of each bundle's Grad-CAM falls inside the
known tumour masks, against a random and a centre-Gaussian map.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medattn.data.synthetic import PCamDifficulty, write_pcam
from medattn.engine.config import Recipe, load_recipe
from medattn.io import atomic_write_json, ensure_dir
from medattn.report.html import Report, img_tag, table_html
from medattn.report.sections import comparison_table, metrics_ci_table

__all__ = ["DemoConfig", "run_demo", "demo_recipe", "demo_overrides", "table_rows", "timing_note", "training_steps",
           "DEMO_MODELS", "DEMO_RECIPES", "TABLE_WIDTH"]

DEMO_RECIPES = {"patch_cnn_baseline": "pcam-baseline", "patch_cnn_attention": "pcam-attention"}
"""Run directory (= model name) → shipped recipe it trains."""
DEMO_MODELS = tuple(DEMO_RECIPES)
_METRICS = ("auroc", "balanced_accuracy", "f1", "recall", "specificity", "ece")
"""Rows of the side-by-side table, named as in ``metrics.json`` and the HTML report."""
_CAM_ROWS = {"pointing_game": "CAM pointing game", "energy_in_mask": "CAM energy in mask"}
_REFS = {"random": "random map", "centre_gaussian": "centre map"}
TABLE_WIDTH = 100
"""The console table fits this many columns (a terminal, a log file, an email)."""
def training_steps(cfg: DemoConfig) -> int:
    """Optimiser steps of the whole demo (both models)."""
    return len(DEMO_MODELS) * cfg.epochs * -(-cfg.n_train // cfg.batch_size)


def timing_note(cfg: DemoConfig, load: float | None = None, cores: int | None = None) -> str:
    """What the demo costs, said before it starts, and a warning when other work shares the CPU
    (the same run took 3–4 times longer at a load of 3–8 on 2 cores; README "Quick start")."""
    import os

    note = f"{training_steps(cfg)} training steps"
    load = os.getloadavg()[0] if load is None else load
    cores = cores or os.cpu_count() or 1
    if load >= 0.75 * cores:
        note += (f"; the machine is busy (1-minute load {load:.1f} on {cores} cores), so expect it to take "
                 "several times longer")
    return note


@dataclass
class DemoConfig:
    """Options of the demo (all shown by ``medattn demo --help``)."""

    out: str = "runs/demo"
    n_train: int = 2048
    n_valid: int = 512
    n_test: int = 512
    epochs: int = 4
    batch_size: int = 64
    lr: float = 2e-3
    width: float = 0.5
    seed: int = 0
    contrast: float = 0.4
    n_boot: int = 1000
    n_cam: int = 128
    num_workers: int = 0
    progress: bool = True


def demo_overrides(cfg: DemoConfig, data: str | Path) -> dict[str, Any]:
    """The ``--set`` overrides that turn a shipped PCam recipe into the demo's run."""
    return {
        "data.root": str(data), "data.num_workers": cfg.num_workers, "model.args.width": cfg.width,
        "optimizer.lr": cfg.lr, "trainer.max_epochs": cfg.epochs, "trainer.batch_size": cfg.batch_size,
        "trainer.seed": cfg.seed, "trainer.progress": cfg.progress, "evaluation.n_boot": cfg.n_boot,
    }


def demo_recipe(model: str, cfg: DemoConfig, data: str | Path) -> Recipe:
    """The validated recipe of one demo model (``model`` is a key of :data:`DEMO_RECIPES`)."""
    return load_recipe(DEMO_RECIPES[model], demo_overrides(cfg, data))


def _data(cfg: DemoConfig, root: Path) -> Path:
    data = root / "data"
    sizes = {"train": cfg.n_train, "valid": cfg.n_valid, "test": cfg.n_test}
    diff = PCamDifficulty(contrast=cfg.contrast)
    stamp = data / "SYNTHETIC.txt"
    want = f"SynthPCam seed={cfg.seed} sizes={sizes} difficulty={asdict(diff)}\n"
    if not (stamp.is_file() and stamp.read_text() == want):
        write_pcam(data, sizes, seed=cfg.seed, difficulty=diff)
    return data


def _fresh_run_dir(run: Path) -> Path:
    """Clear the previous demo run in ``run`` (``train_run`` refuses to overwrite a run).

    Only a folder the demo wrote itself is removed: one whose ``run.json`` names a PCam recipe.
    """
    info = run / "run.json"
    if info.is_file() and json.loads(info.read_text()).get("recipe") in DEMO_RECIPES.values():
        shutil.rmtree(run)
    elif run.exists() and any(run.iterdir()):
        from medattn.errors import ConfigError

        raise ConfigError(f"--out: '{run}' exists and is not a demo run; choose another --out")
    return run


def _cam_study(bundle: Path, data: Path, n_cam: int, seed: int) -> dict[str, Any]:
    """Grad-CAM of the bundle on up to ``n_cam`` positive test patches, scored against their
    tumour masks beside a random and a centre-Gaussian map (the chance levels)."""
    import h5py

    from medattn.bundle import load_bundle
    from medattn.data.formats.pcam_h5 import pcam_files
    from medattn.explain.cam import compute_cams
    from medattn.explain.faithfulness import centre_gaussian_map, localisation_scores, random_map

    files = pcam_files(data, "test")
    with h5py.File(files["y"], "r") as f:
        pos = np.nonzero(np.asarray(f["y"]).reshape(-1) == 1)[0][:n_cam]
    with h5py.File(files["mask"], "r") as f:
        masks = np.asarray(f["mask"][pos])
    with h5py.File(files["x"], "r") as f:
        raw = np.asarray(f["x"][pos])
    pred = load_bundle(bundle, device="cpu")
    cams = compute_cams(pred.model, pred.preprocess(list(raw)), method="gradcam")
    rng = np.random.default_rng(seed)
    h, w = masks.shape[1:]
    scores = {
        "gradcam": localisation_scores(cams, masks),
        "random": localisation_scores(np.stack([random_map(h, w, rng) for _ in masks]), masks),
        "centre_gaussian": localisation_scores(np.stack([centre_gaussian_map(h, w)] * len(masks)), masks),
    }
    return {"scores": scores, "cams": cams, "raw": raw}


def _train_one(name: str, cfg: DemoConfig, data: Path, root: Path, con: Any) -> dict[str, Any]:
    """Train one recipe into ``root/name`` and add the demo's CAM-localisation study to the run."""
    from PIL import Image

    from medattn.engine.runner import train_run
    from medattn.explain.overlay import overlay

    recipe = demo_recipe(name, cfg, data)
    con.print(f"training [cyan]{name}[/] (recipe {DEMO_RECIPES[name]}, width {cfg.width}, ≤{cfg.epochs} epochs)")
    run = _fresh_run_dir(root / name)
    summary = train_run(recipe, out=run)
    doc = json.loads((run / "metrics.json").read_text())
    study = _cam_study(run / "bundle", data, cfg.n_cam, cfg.seed)
    cam_dir = ensure_dir(run / "cams")
    for i in range(min(8, len(study["cams"]))):
        Image.fromarray(overlay(study["raw"][i], study["cams"][i])).save(cam_dir / f"test_pos_{i:03d}_gradcam.png")
    atomic_write_json(run / "localisation.json", study["scores"])
    stage = summary["stages"]["main"]
    return {"metrics": doc["metrics"], "threshold": doc["threshold"], "ece": doc["metrics"]["ece"]["value"],
            "localisation": study["scores"], "best_val_auroc": stage["best_val"], "epochs": stage["epochs"],
            "seconds": summary.get("seconds"), "run": str(run), "recipe": DEMO_RECIPES[name]}


def _curves(results: dict[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Test labels and probabilities of every run, from its ``test_predictions.csv``."""
    from medattn.metrics.compare import load_predictions

    out = {}
    for name, r in results.items():
        _, df = load_predictions(r["run"])
        prob = next(c for c in df.columns if c.startswith("prob_"))
        out[name] = (df["label"].astype(int).to_numpy(), df[prob].to_numpy(np.float64))
    return out


def run_demo(cfg: DemoConfig, console: Any = None) -> dict[str, Any]:
    """Run the whole demo and return its results (also written under ``cfg.out``)."""
    import sys

    from rich.console import Console

    from medattn.metrics.compare import compare_prediction_tables
    from medattn.report.eval_plots import save_pr_curve, save_reliability
    from medattn.report.plots import save_roc

    con = console or Console(width=None if sys.stdout.isatty() else TABLE_WIDTH)
    t0 = time.time()
    root = ensure_dir(cfg.out)
    con.print(f"[bold]medattn demo[/]: SynthPCam {cfg.n_train}/{cfg.n_valid}/{cfg.n_test} patches → {root} "
              f"({timing_note(cfg)})")
    data = _data(cfg, root)
    results = {name: _train_one(name, cfg, data, root, con) for name in DEMO_MODELS}
    base, att = DEMO_MODELS
    shutil.copyfile(root / base / "audit.json", root / "audit.json")  # same data: one audit for both runs
    audit_result = json.loads((root / "audit.json").read_text())
    curves = _curves(results)
    save_roc(curves, root / "roc_curve.png")
    save_pr_curve(curves, root / "pr_curve.png")
    save_reliability(curves, root / "calibration.png")
    comparison = compare_prediction_tables(root / base, root / att, n_boot=cfg.n_boot, seed=cfg.seed)
    atomic_write_json(root / "comparison.json", {"a": base, "b": att, **comparison})
    header, rows = _print_table(con, results)
    d = {k: "n/a" if v is None or v != v else f"{v:+.3f}"
         for k, v in comparison["metrics"]["auroc"].items()}  # type: ignore[index]
    con.print(f"{att} − {base}: AUROC {d['diff']} [{d['ci_low']}, {d['ci_high']}], "
              f"p = {d['p_value'].lstrip('+')} (paired bootstrap over {comparison['resampled']}, "
              f"as `medattn compare {root / base} {root / att}`); audit passed: {audit_result['passed']}")
    _write_report(root, cfg, data, results, (header, rows), comparison, audit_result)
    summary = {"config": asdict(cfg), "seconds": round(time.time() - t0, 1), "models": results,
               "comparison": comparison["metrics"]}
    atomic_write_json(root / "demo_summary.json", summary)
    con.print(f"report: [bold]{(root / 'report.html').resolve()}[/]  ({summary['seconds']:.0f} s)")
    return summary


def _f(v: float | None) -> str:
    """Three decimals; ``n/a`` for a missing or NaN value (e.g. CIs with ``--n-boot 0``)."""
    return "n/a" if v is None or v != v else f"{v:.3f}"


def _ci(m: dict[str, Any]) -> str:
    """``0.953 [0.931, 0.972]`` (value and 95% CI) of one metric."""
    return f"{_f(m['value'])} [{_f(m.get('ci_low'))}, {_f(m.get('ci_high'))}]"


def table_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the side-by-side table, one row per metric (the console and the HTML
    report show this same table): test metrics with 95% CIs, then the CAM localisation scores
    beside those of a random and a centre-Gaussian map."""
    header = ["metric", *results, *_REFS.values()]
    rows = [[k, *(_ci(r["metrics"][k]) for r in results.values()), *[""] * len(_REFS)] for k in _METRICS]
    first = next(iter(results.values()))["localisation"]
    for key, label in _CAM_ROWS.items():
        rows.append([label, *(_f(r["localisation"]["gradcam"][key]) for r in results.values()),
                     *(_f(first[ref][key]) for ref in _REFS)])
    return header, rows


def _print_table(con: Any, results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Print the side-by-side table (at most :data:`TABLE_WIDTH` columns); return header and rows."""
    from rich import box
    from rich.table import Table

    header, rows = table_rows(results)
    table = Table(title="SynthPCam test split (95% bootstrap CIs over slides)", box=box.SIMPLE_HEAD)
    for i, h in enumerate(header):
        table.add_column(h, no_wrap=True, justify="left" if i == 0 else "center")
    for row in rows:
        table.add_row(*row)
    con.print(table, width=min(con.width, TABLE_WIDTH))
    return header, rows


def _commands(cfg: DemoConfig, data: Path, root: Path) -> str:
    """The ``medattn`` commands that reproduce the demo's runs and comparison one by one."""
    ov = demo_overrides(cfg, data)
    sets = " ".join(f"--set {k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in ov.items()
                    if k != "data.root")
    lines = [f"# {data}: SynthPCam written by the demo (generator settings in SYNTHETIC.txt)"]
    lines += [f"medattn train {rec} --data {data} --out {root / name} {sets}" for name, rec in DEMO_RECIPES.items()]
    a, b = DEMO_MODELS
    lines.append(f"medattn compare {root / a} {root / b} --n-boot {cfg.n_boot} --seed {cfg.seed}")
    return "\n".join(lines)


def _write_report(root: Path, cfg: DemoConfig, data: Path, results: dict[str, Any],
                  table: tuple[list[str], list[list[str]]], comparison: dict[str, Any],
                  audit_result: dict[str, Any]) -> None:
    report = Report("medattn demo: baseline vs attention CNN on SynthPCam")
    splits = [[s, v["items"], v["groups"], ", ".join(f"{k}: {n}" for k, n in v["classes"].items())]
              for s, v in audit_result["splits"].items()]
    leak = audit_result["leakage"]
    report.add("data", "Data and audit", "<p>SynthPCam (synthetic, PCam HDF5 layout): "
               f"{cfg.n_train} train / {cfg.n_valid} validation / {cfg.n_test} test patches, 96×96. "
               "Label = tumour pixels in the centre 32×32 (PCam rule).</p>"
               + table_html(["split", "patches", "slides", "classes"], splits)
               + f"<p class=note>Leakage audit: slides in several splits {leak['group_overlap']}, identical patches "
               f"across splits {leak['exact_cross_split']}, near-identical {leak['near_cross_split']}; "
               f"passed: {audit_result['passed']}.</p>")
    report.add("metrics", "Test metrics with 95% CIs",
               table_html(*table)
               + "<p class=note>Each model is a recipe run (its own report.html in its folder). Threshold "
               "chosen on validation (Youden's J), applied unchanged to test; CIs resample slides.</p>")
    per_model = "".join(f"<h3>{n} (recipe {r['recipe']})</h3>" + metrics_ci_table(r["metrics"])
                        for n, r in results.items())
    report.add("per-model", "All metrics per model", per_model)
    a, b = DEMO_MODELS
    report.add("comparison", "Attention vs baseline (paired)",
               f"<p>A = {a}, B = {b}; same test patches, slides resampled together "
               "(the comparison of <code>medattn compare</code>).</p>" + comparison_table(comparison))
    report.add("curves", "ROC and precision-recall",
               img_tag(root / "roc_curve.png", "ROC") + img_tag(root / "pr_curve.png", "PR"))
    report.add("calibration", "Calibration", img_tag(root / "calibration.png", "reliability diagram"))
    hist = "".join(img_tag(Path(r["run"]) / "training_history.png", f"{n} history", 520) for n, r in results.items())
    report.add("training", "Training curves", hist)
    cms = "".join(img_tag(Path(r["run"]) / "confusion_matrix.png", f"{n} confusion", 300) for n, r in results.items())
    report.add("confusion", "Confusion matrices", cms)
    gal = ""
    for n, r in results.items():
        imgs = sorted((Path(r["run"]) / "cams").glob("test_pos_*.png"))
        gal += f"<h3>{n}</h3><div class=gallery>" + "".join(img_tag(p, p.name, 128) for p in imgs) + "</div>"
    report.add("explanations", "Grad-CAM on tumour patches", gal)
    report.add("reproducibility", "Reproducibility", "<pre>" + json.dumps(asdict(cfg), indent=2) + "\n"
               + f"torch {torch.__version__}\n\nThe same runs, one command at a time:\n"
               + _commands(cfg, data, root) + "</pre>")
    report.write(root / "report.html")
