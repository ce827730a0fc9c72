from __future__ import annotations

import json

import pandas as pd
import pytest

from medattn.demo import DEMO_MODELS, DemoConfig, run_demo


def test_tiny_demo_writes_every_output(tmp_path):
    cfg = DemoConfig(out=str(tmp_path / "demo"), n_train=64, n_valid=32, n_test=32, epochs=1, width=0.25,
                     n_boot=50, n_cam=8, progress=False)
    summary = run_demo(cfg)
    root = tmp_path / "demo"
    assert (root / "report.html").is_file() and (root / "roc_curve.png").is_file()
    html = (root / "report.html").read_text()
    for section in ("data", "metrics", "training", "confusion", "explanations", "reproducibility"):
        assert f'id="{section}"' in html
    assert "src=\"http" not in html  # self-contained
    for name in DEMO_MODELS:
        run = root / name
        metrics = json.loads((run / "metrics.json").read_text())
        auc = metrics["metrics"]["auroc"]
        assert auc["ci_low"] <= auc["value"] <= auc["ci_high"]
        preds = pd.read_csv(run / "test_predictions.csv")
        assert len(preds) == 32 and {"file", "group", "label", "prediction"} <= set(preds.columns)
        assert (run / "bundle" / "model.safetensors").is_file()
        assert (run / "confusion_matrix.png").is_file()
        assert len(list((run / "cams").glob("*.png"))) >= 1
        loc = summary["models"][name]["localisation"]
        assert set(loc) == {"gradcam", "random", "centre_gaussian"}
    assert json.loads((root / "demo_summary.json").read_text())["config"]["n_train"] == 64


@pytest.mark.slow
def test_short_training_learns(tmp_path):
    """A few hundred steps must learn the task (AUROC well above chance), not merely run."""
    cfg = DemoConfig(out=str(tmp_path / "demo"), n_train=512, n_valid=128, n_test=128, epochs=3, width=0.25,
                     n_boot=100, n_cam=16, progress=False)
    summary = run_demo(cfg)
    for name in DEMO_MODELS:
        assert summary["models"][name]["metrics"]["auroc"]["value"] > 0.8
