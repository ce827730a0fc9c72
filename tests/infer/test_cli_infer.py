"""`medattn predict` / `medattn slide` from the command line with a saved bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medattn.bundle import save_bundle
from medattn.cli import main
from medattn.infer.testslides import synthetic_slide
from medattn.models import create_model


@pytest.fixture
def tiny_bundle(tmp_path: Path) -> Path:
    import torch

    torch.manual_seed(0)
    model = create_model("patch_cnn_baseline", num_classes=1, width=0.125)
    meta = {"task": "binary", "class_names": ["normal", "tumour"], "input_size": 32, "in_chans": 3,
            "mean": [0.5] * 3, "std": [0.25] * 3, "threshold": 0.5, "recipe": {"data": {"mpp": 2.0}}}
    return save_bundle(model, meta, tmp_path / "bundle")


def test_cli_predict_and_slide(tmp_path: Path, tiny_bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(3):
        Image.fromarray(np.full((32, 32, 3), 60 * i, np.uint8)).save(imgs / f"{i}.png")
    assert main(["predict", str(tiny_bundle), str(imgs), "--out", str(tmp_path / "p")]) == 0
    assert "3 predicted" in capsys.readouterr().out
    assert main(["predict", str(tiny_bundle), str(imgs), "--out", str(tmp_path / "p")]) == 2
    assert "--resume" in capsys.readouterr().err
    slide, _ = synthetic_slide(tmp_path / "s.svs", grid=(2, 3), mpp=1.0)
    assert main(["slide", str(tiny_bundle), str(slide), "--out", str(tmp_path / "sl"), "--workers", "0"]) == 0
    summary = json.loads((tmp_path / "sl" / "s" / "summary.json").read_text())
    assert summary["tile_level0_px"] == pytest.approx(64) and summary["model_mpp"] == 2.0
    assert main(["slide", str(tiny_bundle), str(slide), "--out", str(tmp_path / "x"), "--region", "1,2"]) == 2
    assert "x,y,w,h" in capsys.readouterr().err
