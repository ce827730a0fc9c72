"""Slide-level tumour area on real IDC patients, each slide scored by a model that never saw its patient.

Run from the repo root::

    .venv/bin/python benchmarks/real/slide_area.py --cv runs/real/slide_area/idc-cv3 \\
        [--train --folds 3 --epochs 4] [--data ../shared/data/breast_idc] [--min-tissue 0.5]

``--cv`` is a cross-validation folder written by ``medattn train idc-cpu --folds K --out CV``
(``--train`` runs that command first when the folder holds none; it adds
``--set data.split.test_fraction=0`` so that every patient lies in some fold's test split). For each
fold ``k`` the script

1. reads the held-out patients of ``CV/fold_k/split.csv`` (test rows, ``group`` = patient id);
2. builds one slide per patient (:func:`medattn.infer.testslides.assemble_idc_slide`: the patient's
   50×50 patches at the x, y of their names, an Aperio-style pyramid at 4 µm/px) and keeps the truth
   (patch boxes and labels) beside it;
3. runs the cohort verb ``medattn slide CV/fold_k/bundle SLIDES/fold_k --out OUT/fold_k`` (tissue
   tiles at the bundle's scale, ``tiles.csv`` per slide, ``cohort.csv``);
4. scores the same patients' patch files with the same bundle (``Predictor.infer``) for reference.

Statistics, over patients (one slide each): the true IDC area (IDC patches × (50 px × 4 µm)²)
against the predicted area, as tissue tiles at or over the bundle threshold × tile area and as the
probability-weighted area (Σ tile probability × tile area): Spearman's ρ and the mean absolute error
in mm², 95% percentile bootstrap CIs resampling patients. Tile AUROC: each true patch's label against
the score of the heatmap tile it sits on (patches whose tile the tissue mask skipped are counted and
left out), pooled over folds, CI resampling patients. The same at patch level (the patch files
themselves) for reference. Writes ``sections/slide_area.md`` / ``.json`` (``run_all.py`` copies the
section into ``docs/results.md``) and ``OUT/patients.csv``, ``OUT/patches.csv``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
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
    machine_note,
    md_table,
    require_data,
    setup_torch,
    write_section,
)

STUDY = "slide_area"
RECIPE = "idc-cpu"
PATCH_PX = 50
PATCH_MPP = 4.0
PATCH_MM2 = (PATCH_PX * PATCH_MPP / 1e3) ** 2
"""True area of one IDC patch: (50 px × 4 µm)² = 0.04 mm²."""


def _rel(p: str | Path) -> str:
    s = str(p)
    return s.replace(str(REPO) + "/", "")


def _shown(args: list[str]) -> str:
    return "medattn " + " ".join(shlex.quote(_rel(a)) for a in args)


# --------------------------------------------------------------------------------------------- CV


def train_cv(cv: Path, data: Path, folds: int, epochs: int) -> None:
    """``medattn train idc-cpu --folds K`` into ``cv`` (every patient in some fold's test split)."""
    args = ["train", RECIPE, "--data", str(data), "--folds", str(folds), "--out", str(cv),
            "--set", f"trainer.max_epochs={epochs}", "--set", "data.split.test_fraction=0"]
    print("$ " + _shown(args), flush=True)
    t0 = time.time()
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("MEDATTN_THREADS", "1")}
    subprocess.run([sys.executable, "-m", "medattn.cli", *args], check=True, cwd=REPO, env=env)
    dump_json(cv / "bench_info.json", {"command": _shown(args), "minutes": (time.time() - t0) / 60})


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def cv_command(cv: Path, summary: dict[str, Any]) -> str:
    """The ``medattn train`` command that made ``cv``: recorded in ``CV/bench_info.json`` (``--train``
    writes it), else rebuilt from ``cv_summary.json`` and the recipe fields that differ from the
    shipped recipe."""
    info = cv / "bench_info.json"
    if info.is_file():
        return json.loads(info.read_text())["command"]
    import yaml

    from medattn.engine.config import load_recipe

    used = _flat(yaml.safe_load((cv / "recipe.yaml").read_text()))
    shipped = _flat(load_recipe(summary["recipe"]).model_dump(mode="json"))
    sets = [f"{k}={used[k]}" for k in used  # the model card is documentation, not training
            if k != "data.root" and not k.startswith("card.") and used[k] != shipped.get(k)]
    args = ["train", summary["recipe"], "--data", summary["data"], "--folds", str(summary["folds"]),
            "--out", str(cv), *[x for s in sets for x in ("--set", s)]]
    return _shown(args)


def _recipe_epochs(path: Path | None, name: str | None = None) -> int:
    """``trainer.max_epochs`` of a resolved recipe file or of a shipped recipe."""
    import yaml

    from medattn.engine.config import load_recipe

    if path is not None:
        return int(yaml.safe_load(path.read_text())["trainer"]["max_epochs"])
    return int(load_recipe(name).trainer.max_epochs)


def fold_patients(cv: Path, k: int) -> list[str]:
    """Patients (groups) of the test rows of ``CV/fold_k/split.csv``."""
    with open(cv / f"fold_{k}" / "split.csv", newline="", encoding="utf-8") as fh:
        pids = {r["group"] for r in csv.DictReader(fh) if r["split"] == "test"}
    return sorted(pids, key=lambda p: (len(p), p))


# -------------------------------------------------------------------------------------- slides


def build_slides(data: Path, pids: list[str], slides: Path, truth: Path) -> float | None:
    """One slide per patient into ``slides/<pid>.svs``, its truth into ``truth/<pid>.csv`` (kept
    when both exist); returns the seconds spent (None when every slide was there)."""
    from medattn.infer.testslides import assemble_idc_slide
    from medattn.io import atomic_write_text

    slides.mkdir(parents=True, exist_ok=True)
    truth.mkdir(parents=True, exist_ok=True)
    t0, built = time.perf_counter(), 0
    for pid in pids:
        if (slides / f"{pid}.svs").is_file() and (truth / f"{pid}.csv").is_file():
            continue
        built += 1
        _, rows = assemble_idc_slide(data, pid, slides / f"{pid}.svs", mpp=PATCH_MPP)
        lines = ["file,x,y,w,h,label"] + [f"{r['file']},{r['x']},{r['y']},{r['w']},{r['h']},{r['label']}"
                                          for r in rows]
        atomic_write_text(truth / f"{pid}.csv", "\n".join(lines) + "\n")
    return time.perf_counter() - t0 if built else None


def run_cohort(bundle: Path, slides: Path, out: Path, min_tissue: float) -> tuple[str, float]:
    """``medattn slide BUNDLE SLIDES --out OUT`` in this process; returns the command and seconds."""
    from medattn.cli import main as cli

    args = ["slide", str(bundle), str(slides), "--out", str(out), "--workers", "0", "--min-tissue", f"{min_tissue:g}"]
    print("$ " + _shown(args), flush=True)
    t0 = time.perf_counter()
    rc = cli(args)
    if rc:
        raise SystemExit(f"`{_shown(args)}` exited {rc}")
    return _shown(args), time.perf_counter() - t0


def patch_scores(bundle: Path, files: list[Path], cache: Path) -> tuple[dict[str, float], Any, float | None]:
    """P(positive class) of each patch file by ``Predictor.infer`` (cached in ``cache``); returns
    the scores, the predictor and the seconds spent (None when cached)."""
    from medattn.bundle import load_bundle

    pred = load_bundle(bundle, device="cpu")
    positive = pred.class_names[-1]
    if cache.is_file():
        with open(cache, newline="", encoding="utf-8") as fh:
            return {r["file"]: float(r["score"]) for r in csv.DictReader(fh)}, pred, None
    from medattn.io import atomic_write_text

    t0 = time.perf_counter()
    scores: dict[str, float] = {}
    for i in range(0, len(files), 256):
        chunk = files[i:i + 256]
        for f, res in zip(chunk, pred.infer(chunk, trust=False, batch_size=64), strict=True):
            scores[f.name] = float(res["probabilities"][positive])
    atomic_write_text(cache, "file,score\n" + "".join(f"{k},{v!r}\n" for k, v in scores.items()))
    return scores, pred, time.perf_counter() - t0


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------------------------ statistics


def patient_stats(pt: dict[str, np.ndarray], pairs: dict[str, tuple[str, str]], n_boot: int,
                  seed: int) -> dict[str, Any]:
    """Spearman ρ, MAE and mean signed error (mm²) of each ``(true, predicted)`` pair of area
    columns, bootstrapping patients."""
    from scipy.stats import spearmanr

    from medattn.metrics.bootstrap import bootstrap_ci

    out = {}
    for name, (tcol, pcol) in pairs.items():
        true, pred = pt[tcol], pt[pcol]

        def fn(i: np.ndarray, true: np.ndarray = true, pred: np.ndarray = pred) -> dict[str, float]:
            rho = spearmanr(true[i], pred[i]).statistic if np.ptp(true[i]) and np.ptp(pred[i]) else float("nan")
            err = pred[i] - true[i]
            return {"spearman": float(rho), "mae_mm2": float(np.abs(err).mean()), "bias_mm2": float(err.mean())}

        out[name] = bootstrap_ci(fn, len(true), None, n_boot, 0.05, seed)
    return out


def auroc_ci(y: np.ndarray, s: np.ndarray, groups: np.ndarray, n_boot: int, seed: int) -> dict[str, float]:
    """Pooled AUROC with a patient-bootstrap CI."""
    from sklearn.metrics import roc_auc_score

    from medattn.metrics.bootstrap import bootstrap_ci

    def fn(i: np.ndarray) -> dict[str, float]:
        return {"auroc": float(roc_auc_score(y[i], s[i])) if len(set(y[i].tolist())) == 2 else float("nan")}

    return bootstrap_ci(fn, len(y), groups, n_boot, 0.05, seed)["auroc"]


# ------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cv", type=Path, default=RUNS / STUDY / "idc-cv3", help="cross-validation folder")
    ap.add_argument("--data", type=Path, default=None, help="breast_idc folder (default ../shared/data/breast_idc)")
    ap.add_argument("--out", type=Path, default=None, help="slides, cohort runs and tables (default CV/slide_area)")
    ap.add_argument("--train", action="store_true", help="run the cross-validation first when --cv holds none")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=4, help="--train: trainer.max_epochs of the folds")
    ap.add_argument("--min-tissue", type=float, default=0.5, help="medattn slide --min-tissue")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    data = (args.data or require_data("breast_idc")).resolve()
    if not (data / "labels.csv").is_file():
        print(f"SKIP: '{data}' holds no labels.csv; nothing to do.")
        return 0
    cv = args.cv.resolve()
    if not (cv / "cv_summary.json").is_file():
        if not args.train:
            raise SystemExit(f"'{cv}' holds no cross-validation; pass --train to run it (or point --cv at one)")
        train_cv(cv, data, args.folds, args.epochs)
    setup_torch()
    summary = json.loads((cv / "cv_summary.json").read_text())
    out = (args.out or cv / STUDY).resolve()
    cohort_root = out / f"cohort-mt{args.min_tissue:g}"
    files = {p.name: p for p in (data / "images").rglob("*.png")}

    patients: list[dict[str, Any]] = []
    patches: list[dict[str, Any]] = []
    commands = []
    times_file = out / "times.json"  # seconds of work actually done, kept across cached reruns
    times: dict[str, float] = json.loads(times_file.read_text()) if times_file.is_file() else {}
    oof_diff = 0.0
    for k in range(summary["folds"]):
        bundle = cv / f"fold_{k}" / "bundle"
        pids = fold_patients(cv, k)
        sec = build_slides(data, pids, out / "slides" / f"fold_{k}", out / "truth")
        if sec is not None:
            times[f"build_{k}"] = sec
        cmd, cohort_sec = run_cohort(bundle, out / "slides" / f"fold_{k}", cohort_root / f"fold_{k}", args.min_tissue)
        commands.append(cmd)
        truth = {pid: _read_csv(out / "truth" / f"{pid}.csv") for pid in pids}
        pfiles = [files[t["file"]] for pid in pids for t in truth[pid]]
        pscore, pred, sec = patch_scores(bundle, pfiles, out / f"patch_scores_fold_{k}.csv")
        thr, col = float(pred.threshold), f"prob_{pred.class_names[-1]}"
        if sec is not None:
            times[f"patch_{k}"] = sec
        oof = {Path(r["file"]).name: float(r[col]) for r in _read_csv(cv / f"fold_{k}" / "test_predictions.csv")
               if r.get(col)}
        common = [n for n in pscore if n in oof]
        if common:
            oof_diff = max(oof_diff, max(abs(pscore[n] - oof[n]) for n in common))
        cohort = {r["slide"]: r for r in _read_csv(cohort_root / f"fold_{k}" / "cohort.csv")}
        if any(r["status"] == "ok" for r in cohort.values()):  # slides run now, not skipped
            times[f"cohort_mt{args.min_tissue:g}_{k}"] = cohort_sec
        for pid in pids:
            row = cohort.get(pid)
            if row is None or row["status"] not in ("ok", "skipped"):
                raise SystemExit(f"slide {pid} of fold {k} did not finish: {row and row['error']}")
            sdir = cohort_root / f"fold_{k}" / pid
            info = json.loads((sdir / "summary.json").read_text())
            tile_mm2 = (float(info["tile_um"]) / 1e3) ** 2
            tiles = _read_csv(sdir / "tiles.csv") if (sdir / "tiles.csv").is_file() else []  # none: no tissue found
            score_at = {(int(t["row"]), int(t["col"])): float(t["score"]) for t in tiles}
            ts = np.array(list(score_at.values()), dtype=float)
            on_patch = set()
            for t in truth[pid]:
                rc = (int(t["y"]) // PATCH_PX, int(t["x"]) // PATCH_PX)
                on_patch.add(rc)
                patches.append({"fold": k, "patient": pid, "file": t["file"], "label": int(t["label"]),
                                "full": (int(t["w"]), int(t["h"])) == (PATCH_PX, PATCH_PX),
                                "tile_score": score_at.get(rc, float("nan")), "patch_score": pscore[t["file"]]})
            ps = np.array([pscore[t["file"]] for t in truth[pid]])
            n_idc = sum(int(t["label"]) for t in truth[pid])
            idc_kept = sum(int(t["label"]) for t in truth[pid]
                           if (int(t["y"]) // PATCH_PX, int(t["x"]) // PATCH_PX) in score_at)
            patients.append({
                "fold": k, "patient": pid, "patches": len(truth[pid]), "idc_patches": n_idc,
                "tiles": len(tiles), "no_tissue": int(not tiles), "covered": sum(rc in score_at for rc in on_patch),
                "tiles_off_patches": sum(rc not in on_patch for rc in score_at),
                "threshold": float(info["threshold"]), "true_mm2": n_idc * PATCH_MM2,
                "true_kept_mm2": idc_kept * PATCH_MM2,
                "slide_thr_mm2": int((ts >= info["threshold"]).sum()) * tile_mm2,
                "slide_prob_mm2": float(ts.sum()) * tile_mm2,
                "cohort_thr_mm2": float(row["tumour_fraction"]) * int(row["tiles"]) * tile_mm2,
                "patch_thr_mm2": int((ps >= thr).sum()) * PATCH_MM2, "patch_prob_mm2": float(ps.sum()) * PATCH_MM2,
                "slide_seconds": float(row["seconds"] or 0.0)})

    from medattn.io import atomic_write_json, atomic_write_text

    atomic_write_json(times_file, times)

    def table(rows: list[dict[str, Any]]) -> str:
        cols = list(rows[0])
        return ",".join(cols) + "\n" + "".join(",".join(str(r[c]) for c in cols) + "\n" for r in rows)

    atomic_write_text(out / "patients.csv", table(patients))
    atomic_write_text(out / "patches.csv", table(patches))

    pt = {c: np.array([p[c] for p in patients], dtype=float) for c in patients[0] if c != "patient"}
    assert np.allclose(pt["cohort_thr_mm2"], pt["slide_thr_mm2"], atol=1e-9), "cohort.csv and tiles.csv disagree"
    areas = patient_stats(pt, {"slide_thr": ("true_mm2", "slide_thr_mm2"), "slide_prob": ("true_mm2", "slide_prob_mm2"),
                               "patch_thr": ("true_mm2", "patch_thr_mm2"), "patch_prob": ("true_mm2", "patch_prob_mm2"),
                               "slide_thr_kept": ("true_kept_mm2", "slide_thr_mm2")}, args.n_boot, args.seed)
    y = np.array([p["label"] for p in patches])
    g = np.array([p["patient"] for p in patches])
    tile = np.array([p["tile_score"] for p in patches])
    patch = np.array([p["patch_score"] for p in patches])
    cov = np.isfinite(tile)
    auc = {"tile": auroc_ci(y[cov], tile[cov], g[cov], args.n_boot, args.seed),
           "patch_covered": auroc_ci(y[cov], patch[cov], g[cov], args.n_boot, args.seed),
           "patch_all": auroc_ci(y, patch, g, args.n_boot, args.seed)}
    n_pat = len(patients)
    shift = float((tile[cov] - patch[cov]).mean())
    r_tp = float(np.corrcoef(tile[cov], patch[cov])[0, 1])
    counts = {"patients": n_pat, "patches": len(patches), "idc_patches": int(y.sum()), "covered": int(cov.sum()),
              "idc_covered": int(y[cov].sum()), "tiles": int(pt["tiles"].sum()),
              "tiles_off_patches": int(pt["tiles_off_patches"].sum()),
              "patients_without_idc": int((pt["idc_patches"] == 0).sum()),
              "slides_without_tiles": int(pt["no_tissue"].sum()),
              "partial_patches": int(sum(not p["full"] for p in patches)),
              "true_mm2_mean": float(pt["true_mm2"].mean()), "true_mm2_max": float(pt["true_mm2"].max()),
              "thresholds": sorted({round(float(t), 4) for t in pt["threshold"]})}

    # ------------------------------------------------------------------------------------ section
    train_cmd = cv_command(cv, summary)
    cv_min = summary.get("seconds", sum(summary.get("fold_seconds", []))) / 60
    a = areas

    def row(label: str, key: str, auc_key: str, items: int) -> list[str]:
        m = a[key]
        return [label, str(n_pat), fmt_ci(m["spearman"]), fmt_ci(m["mae_mm2"], 2), fmt(m["bias_mm2"]["value"], 2),
                f"{fmt_ci(auc[auc_key])} ({items})"]

    rows = [row("slide: tiles ≥ threshold × tile area", "slide_thr", "tile", int(cov.sum())),
            row("slide: Σ tile probability × tile area", "slide_prob", "tile", int(cov.sum())),
            row("patch files: patches ≥ threshold × 0.04 mm²", "patch_thr", "patch_all", len(patches)),
            row("patch files: Σ patch probability × 0.04 mm²", "patch_prob", "patch_all", len(patches))]
    thr = counts["thresholds"]
    epochs = (_recipe_epochs(cv / "recipe.yaml"), _recipe_epochs(None, summary["recipe"]))
    tta = bool(pred.meta.get("tta"))

    def spent(prefix: str) -> float:
        return sum(v for key, v in times.items() if key.startswith(prefix))

    md = "\n".join([
        "## Slide-level tumour area: one assembled slide per IDC patient, cross-validated by patient (issue 25)",
        "",
        f"Command: `{command_line()}`. The cross-validation it reads was made by `{train_cmd}` "
        f"({cv_min:.1f} min for {summary['folds']} folds); the slides were scored by "
        + "; ".join(f"`{c}`" for c in commands) + ".",
        "",
        f"Data: `breast_idc`, {n_pat} patients, {len(patches)} patches ({counts['idc_patches']} IDC). "
        f"Each patient's 50×50 patches were put back at the x, y of their names into one Aperio-style "
        f"JPEG pyramid at 4 µm/px (`medattn.infer.testslides.assemble_idc_slide`); glass around them. "
        f"Each slide was scored by the bundle of the fold that held its patient out (trained on the other "
        f"folds' patients; checkpoint and threshold chosen on an inner validation split of them) for "
        f"{epochs[0]} epochs (the shipped recipe trains {epochs[1]}: fewer to fit the shared 2-core CPU, so the "
        "figures are a lower bound for the shipped recipe). "
        f"`medattn slide` tiles the slide at the bundle's scale (50 px at 4 µm/px = 200 µm tiles, on the patch "
        f"grid) with `--min-tissue {args.min_tissue:g}` (saturation Otsu mask). Bundle thresholds: "
        f"{', '.join(f'{t:.3f}' for t in thr)}.",
        "",
        f"True IDC area = IDC patches × (50 px × 4 µm)² = 0.04 mm² each (mean {counts['true_mm2_mean']:.2f} mm² "
        f"per patient, max {counts['true_mm2_max']:.2f}; {counts['patients_without_idc']} patients without IDC). "
        "Predicted area: tissue tiles at or over the bundle threshold × tile area (what `cohort.csv`'s "
        "`tumour_fraction × tiles` gives), or Σ tile probability × tile area. 95% CIs: "
        f"{args.n_boot} percentile-bootstrap resamples of patients. AUROC in the last column: stitched heatmap "
        "tiles at the true patch positions (slide rows) or the patch files themselves via `Predictor.infer` "
        "(patch rows), pooled over folds, number of patches in brackets.",
        "",
        md_table(["prediction", "patients", "Spearman ρ [CI]", "MAE mm² [CI]", "mean error mm²", "AUROC [CI] (patches)"],
                 rows),
        "",
        f"Coverage: the tissue mask kept {counts['tiles']} tiles; {counts['covered']} of the {len(patches)} true "
        f"patches ({100 * counts['covered'] / len(patches):.1f}%) lie on a kept tile, {counts['idc_covered']} of the "
        f"{counts['idc_patches']} IDC patches ({100 * counts['idc_covered'] / max(1, counts['idc_patches']):.1f}%); "
        f"{counts['tiles_off_patches']} kept tiles lie on glass only; {counts['slides_without_tiles']} slides had no "
        "tissue tile. Patches whose tile was skipped (pale, fatty tissue taken for glass, and the "
        f"{counts['partial_patches']} edge patches smaller than 50×50, whose tile is part glass) count as predicted "
        "area 0. Against the IDC area on kept tiles only (what the tissue mask let the model see), the "
        f"thresholded slide area has Spearman {fmt_ci(a['slide_thr_kept']['spearman'])} and MAE "
        f"{fmt_ci(a['slide_thr_kept']['mae_mm2'], 2)} mm². On the same {counts['covered']} covered patches the "
        f"patch files score AUROC {fmt_ci(auc['patch_covered'])} against {fmt_ci(auc['tile'])} for the stitched "
        f"tiles; the tile scores are the patch scores shifted by {shift:+.3f} on average (Pearson r {r_tp:.3f}; "
        "the pyramid is JPEG q90, the patches PNG), which is why the thresholded slide area over-counts more than "
        "the patch files do. `Predictor.infer` on the patch files matched the folds' own "
        f"`test_predictions.csv` to {oof_diff:.1e} (max |Δp|)"
        + (f"; the cross-validation's pooled out-of-fold AUROC is {fmt_ci(summary['pooled']['auroc'])}"
           if (summary.get("pooled") or {}).get("auroc") else "") + ".",
        "",
        f"Wall time: {cv_min + (spent('build_') + spent(f'cohort_mt{args.min_tissue:g}_') + spent('patch_')) / 60:.1f} "
        f"min in all: cross-validation {cv_min:.1f} min; building {n_pat} slides {spent('build_'):.0f} s; "
        f"`medattn slide` over the {n_pat} slides {spent(f'cohort_mt{args.min_tissue:g}_'):.0f} s "
        f"(Σ of the slides' own times {pt['slide_seconds'].sum():.0f} s; {counts['tiles']} tiles"
        f"{', 8-view test-time augmentation as recorded in the bundle' if tta else ''}); the patch files "
        f"through `Predictor.infer` {spent('patch_'):.0f} s; on {machine_note()}, {time.strftime('%Y-%m-%d')}. "
        f"Seed {args.seed}.",
    ])
    write_section(STUDY, md, {"counts": counts, "areas": areas, "auroc": auc, "times": times,
                              "train_command": train_cmd, "slide_commands": commands, "cv_minutes": cv_min,
                              "oof_max_abs_diff": oof_diff, "tile_minus_patch_mean": shift, "tile_patch_pearson": r_tp, "min_tissue": args.min_tissue})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
