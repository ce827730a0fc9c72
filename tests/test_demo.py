from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from medattn.cli import main
from medattn.demo import DEMO_MODELS, DEMO_RECIPES, DemoConfig, run_demo

SECTIONS = ("data", "metrics", "per-model", "comparison", "curves", "calibration", "training", "confusion",
            "explanations", "reproducibility")
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("demo") / "demo"
    cfg = DemoConfig(out=str(root), n_train=64, n_valid=32, n_test=32, epochs=1, width=0.25,
                     n_boot=50, n_cam=8, progress=False)
    return root, run_demo(cfg)


def test_tiny_demo_writes_every_output(tiny_demo):
    root, summary = tiny_demo
    for f in ("report.html", "roc_curve.png", "pr_curve.png", "calibration.png", "audit.json", "comparison.json"):
        assert (root / f).is_file(), f
    html = (root / "report.html").read_text()
    for section in SECTIONS:
        assert f'id="{section}"' in html
    assert "src=\"http" not in html  # self-contained
    audit = json.loads((root / "audit.json").read_text())
    assert audit["passed"] and audit["leakage"]["group_overlap"] == 0
    cmp = json.loads((root / "comparison.json").read_text())["metrics"]["auroc"]
    assert cmp["ci_low"] <= cmp["diff"] <= cmp["ci_high"] and 0 <= cmp["p_value"] <= 1
    for name in DEMO_MODELS:
        run = root / name
        metrics = json.loads((run / "metrics.json").read_text())
        auc = metrics["metrics"]["auroc"]
        assert auc["ci_low"] <= auc["value"] <= auc["ci_high"]
        assert metrics["metrics"]["accuracy"]["resampled"] == "groups"
        preds = pd.read_csv(run / "test_predictions.csv")
        assert len(preds) == 32 and {"file", "group", "true_label", "predicted_label"} <= set(preds.columns)
        # the validation threshold is applied unchanged (the CSV rounds probabilities to 6 decimals)
        prob = preds.filter(like="prob_").iloc[:, 0].to_numpy()
        clear = np.abs(prob - metrics["threshold"]) > 1e-6
        assert clear.any()
        assert np.array_equal(preds["predicted_label"].to_numpy()[clear], (prob >= metrics["threshold"])[clear].astype(int))
        assert (run / "bundle" / "model.safetensors").is_file()
        # a normal `medattn train` run directory, trained from the shipped recipe with the demo's sizes
        for f in ("recipe.yaml", "split.csv", "training_history.csv", "report.html", "localisation.json"):
            assert (run / f).is_file(), f
        recipe = yaml.safe_load((run / "recipe.yaml").read_text())
        assert recipe["name"] == DEMO_RECIPES[name] and recipe["model"]["name"] == name
        assert recipe["model"]["args"]["width"] == 0.25 and recipe["trainer"]["max_epochs"] == 1
        assert recipe["data"]["root"] == str(root / "data")
        assert (run / "confusion_matrix.png").is_file()
        assert len(list((run / "cams").glob("*.png"))) >= 1
        loc = summary["models"][name]["localisation"]
        assert set(loc) == {"gradcam", "random", "centre_gaussian"}
        assert 0 <= loc["gradcam"]["energy_in_mask"] <= 1
    assert json.loads((root / "demo_summary.json").read_text())["config"]["n_train"] == 64


def test_console_table_fits_100_columns_with_the_reports_names(tiny_demo):
    import io
    import re

    from rich.console import Console

    from medattn.demo import _print_table

    root, summary = tiny_demo
    buf = io.StringIO()
    header, rows = _print_table(Console(file=buf, width=200, color_system=None), summary["models"])
    lines = buf.getvalue().splitlines()
    assert max(len(ln) for ln in lines) <= 100, max(len(ln) for ln in lines)
    assert header == ["metric", *DEMO_MODELS, "random map", "centre map"]
    assert [r[0] for r in rows] == ["auroc", "balanced_accuracy", "f1", "recall", "specificity", "ece",
                                    "CAM pointing game", "CAM energy in mask"]
    text = buf.getvalue()
    auc = summary["models"][DEMO_MODELS[1]]["metrics"]["auroc"]
    assert f"{auc['value']:.3f} [{auc['ci_low']:.3f}, {auc['ci_high']:.3f}]" in text
    html = (root / "report.html").read_text()
    metrics_section = html[html.index('id="metrics"'):html.index('id="per-model"')]
    for name in (*header, *(r[0] for r in rows)):  # one vocabulary: the console says what the report says
        assert re.search(rf"<t[hd]>{re.escape(name)}</t[hd]>", metrics_section), name
    assert "sensitivity" not in text and "sensitivity" not in metrics_section


def test_demo_says_what_it_costs_and_warns_on_a_busy_machine() -> None:
    from medattn.demo import timing_note, training_steps

    assert training_steps(DemoConfig()) == 2 * 4 * 32 == 256
    assert timing_note(DemoConfig(out="x"), load=0.3, cores=2) == "256 training steps"
    busy = timing_note(DemoConfig(), load=3.2, cores=2)
    assert "the machine is busy (1-minute load 3.2 on 2 cores)" in busy and "longer" in busy
    assert timing_note(DemoConfig(epochs=1), load=0.0, cores=2) == "64 training steps"


def test_demo_comparison_is_medattn_compare(tiny_demo, tmp_path):
    """The demo's comparison is `medattn compare` of its two run folders, number for number."""
    root, _ = tiny_demo
    out = tmp_path / "cmp.json"
    a, b = (str(root / n) for n in DEMO_MODELS)
    assert main(["compare", a, b, "--n-boot", "50", "--seed", "0", "--out", str(out)]) == 0
    cli = json.loads(out.read_text())
    demo = json.loads((root / "comparison.json").read_text())
    assert cli["resampled"] == demo["resampled"] == "groups"
    assert cli["metrics"] == demo["metrics"]


def test_demo_rerun_replaces_its_runs(tmp_path):
    """Running the demo again into the same folder replaces its runs instead of refusing."""
    cfg = DemoConfig(out=str(tmp_path / "demo"), n_train=32, n_valid=16, n_test=16, epochs=1, width=0.25,
                     n_boot=0, n_cam=2, progress=False)
    run_demo(cfg)
    summary = run_demo(cfg)
    for name in DEMO_MODELS:
        assert len(list((tmp_path / "demo" / name / "checkpoints").glob("best*.ckpt"))) == 1
        assert summary["models"][name]["epochs"] >= 1


@pytest.mark.browser
def test_demo_report_opens_in_headless_chromium(tiny_demo):
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is absent (apt-get install -y chromium); the browser test needs it")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    root, _ = tiny_demo
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync"]
    requests: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.goto((root / "report.html").as_uri(), wait_until="load")
            for sid in SECTIONS:
                sec = page.locator(f"section#{sid}")
                sec.scroll_into_view_if_needed()
                assert sec.is_visible(), sid
            broken = page.evaluate("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length")
            n_img = page.evaluate("document.images.length")
            page.screenshot(path=str(root / "report_screenshot.png"), full_page=True)
        finally:
            browser.close()
    assert broken == 0 and n_img >= 8
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
    assert (root / "report_screenshot.png").stat().st_size > 10_000


@pytest.mark.slow
def test_short_training_learns(tmp_path):
    """A few hundred steps must learn the task (AUROC well above chance), not merely run."""
    cfg = DemoConfig(out=str(tmp_path / "demo"), n_train=512, n_valid=128, n_test=128, epochs=3, width=0.25,
                     n_boot=100, n_cam=16, progress=False)
    summary = run_demo(cfg)
    for name in DEMO_MODELS:
        assert summary["models"][name]["metrics"]["auroc"]["value"] > 0.8
