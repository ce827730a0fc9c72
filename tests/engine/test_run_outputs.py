"""A run directory holds every file of DESIGN.md "Conventions"; bad files are skipped or named.

One smoke training (binary, class folders with a zero-byte and a truncated image, ``--on-bad-file
skip``, temperature scaling on) is checked file by file; the segmentation outputs are checked by
evaluating an untrained U-Net (no training needed to test the writers' wiring).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from medattn.cli import main

ZERO, TRUNC = "tumour/cell_0003.png", "normal/cell_0000.png"


def _folders_with_bad_files(root: Path) -> Path:
    from medattn.engine.smoke import write_smoke_data

    data = write_smoke_data("folders", root, class_names=["normal", "tumour"], task="binary")
    (data / ZERO).write_bytes(b"")
    raw = (data / TRUNC).read_bytes()
    (data / TRUNC).write_bytes(raw[: len(raw) // 2])
    assert (data / ZERO).is_file() and (data / TRUNC).is_file()
    return data


def _train_args(data: Path, out: Path, policy: str) -> list[str]:
    return ["train", "pcam-baseline", "--smoke", "--data", str(data), "--out", str(out),
            "--set", "data.format=folders", "--set", "data.max_items=null",
            "--set", "evaluation.temperature_scaling=true", "--set", "evaluation.n_cams=3",
            "--on-bad-file", policy]


@pytest.fixture(scope="module")
def bad_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _folders_with_bad_files(tmp_path_factory.mktemp("folders"))


@pytest.fixture(scope="module")
def cls_run(bad_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "cls"
    assert main(_train_args(bad_data, out, "skip")) == 0
    return out


def test_bad_file_error_names_the_file(bad_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(_train_args(bad_data, tmp_path / "err", "error"))
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert "normal/cell_0000.png" in err or "tumour/cell_0003.png" in err
    assert "on_bad_file" in err and "Traceback" not in err
    assert not (tmp_path / "err" / "checkpoints").exists()  # refused before training


def test_validate_lists_bad_files(bad_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", str(bad_data), "--out", str(tmp_path / "bad.csv")])
    text = capsys.readouterr().out
    assert code == 1
    assert f"BAD {ZERO}: empty (0 bytes)" in text and f"BAD {TRUNC}: truncated" in text
    assert "2 bad file(s)" in text
    rows = list(csv.DictReader((tmp_path / "bad.csv").read_text().splitlines()))
    assert {r["file"] for r in rows} == {ZERO, TRUNC}


def test_skip_trains_and_lists_bad_files(cls_run: Path) -> None:
    rows = list(csv.DictReader((cls_run / "bad_files.txt").read_text().splitlines()))
    assert sorted(r["file"] for r in rows) == sorted([TRUNC, ZERO])
    split = (cls_run / "split.csv").read_text()
    assert ZERO not in split and TRUNC not in split
    preds = (cls_run / "test_predictions.csv").read_text()
    assert ZERO not in preds and TRUNC not in preds


def test_evaluate_on_bad_file(cls_run: Path, bad_data: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    """`medattn evaluate --on-bad-file`: the default skips and lists; error names the file before
    anything is scored."""
    ext = ["evaluate", str(cls_run / "bundle"), "--data", str(bad_data), "--external"]
    assert main([*ext, "--out", str(tmp_path / "err"), "--on-bad-file", "error"]) == 2
    err = capsys.readouterr().err.strip()
    assert (ZERO in err or TRUNC in err) and len(err.splitlines()) == 1
    assert not (tmp_path / "err" / "metrics.json").exists()
    assert main([*ext, "--out", str(tmp_path / "skip")]) == 0
    rows = list(csv.DictReader((tmp_path / "skip" / "bad_files.txt").read_text().splitlines()))
    assert sorted(r["file"] for r in rows) == sorted([TRUNC, ZERO])


def test_classification_run_directory_is_complete(cls_run: Path) -> None:
    for f in ("recipe.yaml", "split.csv", "audit.json", "training_history.csv", "training_history.png",
              "bundle/bundle.json", "metrics.json", "per_class_metrics.csv", "test_predictions.csv",
              "confusion_matrix.png", "roc_curve.png", "pr_curve.png", "calibration.png", "report.html"):
        assert (cls_run / f).is_file(), f
    doc = json.loads((cls_run / "metrics.json").read_text())
    for name in ("auroc", "f1", "ece"):
        m = doc["metrics"][name]
        assert m["ci_low"] <= m["value"] <= m["ci_high"], name
    cal = doc["calibration"]
    assert cal["ece"] == pytest.approx(doc["metrics"]["ece"]["value"])
    assert cal["temperature"] > 0 and cal["temperature_fitted_on"] == "valid"
    per = list(csv.DictReader((cls_run / "per_class_metrics.csv").read_text().splitlines()))
    assert [r["class"] for r in per] == ["normal", "tumour"]
    cams = sorted(p.name for p in (cls_run / "cams").glob("*__gradcam.png"))
    assert len(cams) == 2  # smoke runs explain two test images (one per class, predicted class)
    assert all(re.fullmatch(r"cell_\d{4}__(normal|tumour)__gradcam\.png", c) for c in cams), cams


def test_report_sections_and_split_hash(cls_run: Path) -> None:
    import hashlib

    html = (cls_run / "report.html").read_text()
    for sid in ("data", "overview", "training", "metrics", "per-class", "calibration", "figures",
                "explanations", "reproducibility"):
        assert f'<section id="{sid}">' in html, sid
    assert 'src="http' not in html and "<link" not in html  # self-contained
    sha = hashlib.sha256((cls_run / "split.csv").read_bytes()).hexdigest()
    assert json.loads((cls_run / "bundle" / "bundle.json").read_text())["split_hash"] == sha
    repro = html[html.index('id="reproducibility"'):]
    assert sha in repro and "lightning" in repro and "torch" in repro and "seed" in repro
    assert "Leakage audit: PASSED" in html and "bad_files.txt" in html
    assert html.count('src="data:image/png;base64,') >= 8


def test_segmentation_outputs(tmp_path: Path) -> None:
    from medattn.engine.datamodule import build_data
    from medattn.engine.evaluate_run import evaluate_model
    from medattn.engine.fit import build_model
    from medattn.engine.runner import resolve_recipe
    from medattn.engine.smoke import write_smoke_data

    recipe = resolve_recipe("oral-unet-none", ["evaluation.n_boot=5"], smoke=True)
    data = write_smoke_data(recipe.data.format, tmp_path / "seg", task="segmentation", n=24)
    rd = build_data(recipe, data)
    ev = evaluate_model(recipe, build_model(recipe, rd.class_names), rd, tmp_path)
    rows = list(csv.DictReader((tmp_path / "segmentation_metrics.csv").read_text().splitlines()))
    assert len(rows) == len(rd.test) == len(ev["per_image"])
    assert {"dice", "iou", "aji", "pq"} <= set(rows[0])
    overlays = sorted((tmp_path / "overlays").glob("*.png"))
    assert overlays and {p.stem for p in overlays} <= {r["image"] for r in rows}
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert doc["per_image"] == "segmentation_metrics.csv" and "ci_low" in doc["metrics"]["dice"]
