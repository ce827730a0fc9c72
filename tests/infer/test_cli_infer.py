"""`medattn predict` / `medattn slide` from the command line with a saved bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medattn.bundle import save_bundle
from medattn.cli import main
from medattn.errors import ConfigError
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


def test_slide_cam_covers_exactly_the_positive_tiles(tmp_path: Path, tiny_bundle: Path) -> None:
    from medattn.bundle import load_bundle
    from medattn.explain.cam import tile_cams
    from medattn.infer.records import read_rows
    from medattn.infer.slide import SlideOptions, run_slide

    pred = load_bundle(tiny_bundle, device="cpu")
    slide, _ = synthetic_slide(tmp_path / "s.svs", grid=(2, 3), mpp=1.0, fill=1.0)
    with pytest.raises(ConfigError, match="cam=True needs cam_maps"):
        run_slide(pred, slide, SlideOptions(out=tmp_path / "c", workers=0, cam=True))
    rows = run_slide(pred, slide, SlideOptions(out=tmp_path / "a", workers=0))["grid"][0]
    scores = sorted(float(r["score"]) for r in read_rows(tmp_path / "a" / "tiles.csv"))
    m = len(scores) // 2
    pred.meta["threshold"] = (scores[m - 1] + scores[m]) / 2  # half the tiles are "positive"
    s = run_slide(pred, slide, SlideOptions(out=tmp_path / "b", workers=0, cam=True, cam_maps=tile_cams))
    cam = np.load(tmp_path / "b" / "cam.npy")
    assert cam.shape == (rows * 8, s["grid"][1] * 8) and "cam.png" in s["outputs"]
    hot = {(int(r["row"]), int(r["col"])) for r in read_rows(tmp_path / "b" / "tiles.csv")
           if float(r["score"]) >= pred.threshold}
    assert hot and {(r, c) for r in range(s["grid"][0]) for c in range(s["grid"][1])
                    if np.isfinite(cam[r * 8, c * 8])} == hot
    vals = cam[np.isfinite(cam)]
    assert vals.min() >= 0 and vals.max() <= 1
