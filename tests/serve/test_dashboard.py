"""The dashboard's texts and panels without a browser: one decision with its threshold and rule,
the preparation steps with their image-quality numbers, sample images of the bundle's own domain."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from medattn.cli import main
from medattn.data.transforms import Preparation
from medattn.errors import ConfigError


def _pred(task: str, names: list[str], rule: str = "youden", **meta) -> SimpleNamespace:
    return SimpleNamespace(task=task, class_names=names, input_hw=(48, 48),
                           meta={"recipe": {"evaluation": {"threshold": rule}}, **meta})


def test_binary_decision_names_label_probability_threshold_and_rule() -> None:
    from medattn.serve.ui import decision_md

    p = _pred("binary", ["non-IDC", "IDC"])
    pos = decision_md(p, {"probabilities": {"non-IDC": 0.573, "IDC": 0.427}, "label": "IDC", "threshold": 0.30})
    assert pos == "### IDC — probability 0.43 ≥ threshold 0.30 (chosen on validation for Youden's J)"
    neg = decision_md(p, {"probabilities": {"non-IDC": 0.8, "IDC": 0.2}, "label": "non-IDC", "threshold": 0.30})
    assert neg == "### non-IDC — probability of IDC 0.20 < threshold 0.30 (chosen on validation for Youden's J)"
    # close to the threshold: as many decimals as it takes to tell them apart
    near = decision_md(p, {"probabilities": {"non-IDC": 0.7004, "IDC": 0.2996}, "label": "non-IDC", "threshold": 0.3})
    assert "0.2996 < threshold 0.3000" in near
    tiled = decision_md(p, {"probabilities": {"non-IDC": 0.1, "IDC": 0.9}, "label": "IDC", "threshold": 0.3,
                            "handling": "tiled", "tiles": 441})
    assert "probability 0.90 (its likeliest of 441 tiles) ≥ threshold 0.30" in tiled
    fixed = decision_md(_pred("binary", ["a", "b"], "fixed"), {"probabilities": {"a": 0.4, "b": 0.6}, "label": "b",
                                                               "threshold": 0.5})
    assert fixed.endswith("(fixed at 0.5 by the recipe)")


def test_multiclass_decision_is_the_argmax_and_the_positive_view_has_its_threshold() -> None:
    from medattn.serve.ui import decision_md

    view = {"name": "abnormal", "classes": ["dys", "cis"], "threshold": 0.45, "threshold_method": "youden on validation"}
    p = _pred("multiclass", ["normal", "dys", "cis"], positive_view=view)
    res = {"probabilities": {"normal": 0.4, "dys": 0.35, "cis": 0.25}, "label": "normal",
           "abnormal": {"probability": 0.6, "positive": True, "threshold": 0.45}}
    md = decision_md(p, res)
    assert md.startswith("### normal — the likeliest of 3 classes, probability 0.40 (no threshold")
    assert "**abnormal** (dys, cis): **yes** — their summed probability 0.60 ≥ threshold 0.45 " \
           "(chosen on validation for Youden's J)" in md
    assert "screening" not in md  # no screening point stored: none shown
    # a named screening point beside Youden's: stated with its own threshold and rule
    view["operating_points"] = {"screening": {"threshold": 0.225, "target_sensitivity": 0.95}}
    res["abnormal"] = {"probability": 0.3, "positive": False, "threshold": 0.45,
                       "screening_positive": True, "screening_threshold": 0.225}
    md = decision_md(p, res)
    assert "**abnormal** (dys, cis): **no** — their summed probability 0.30 < threshold 0.45" in md
    assert md.splitlines()[-1] == ("screening point: **yes** — 0.30 ≥ threshold 0.23 (the highest threshold "
                                   "reaching sensitivity ≥ 0.95 on validation)")


def test_multilabel_decision_lists_the_findings_over_their_thresholds() -> None:
    from medattn.serve.ui import decision_md

    p = _pred("multilabel", ["Effusion", "Mass"])
    th = {"Effusion": 0.4, "Mass": 0.3}
    md = decision_md(p, {"probabilities": {"Effusion": 0.62, "Mass": 0.1}, "labels": ["Effusion"], "thresholds": th})
    assert md.startswith("### Findings over their thresholds: **Effusion** 0.62 ≥ threshold 0.40")
    assert "Mass" not in md.splitlines()[0] and "chosen on validation for Youden's J" in md
    none = decision_md(p, {"probabilities": {"Effusion": 0.2, "Mass": 0.25}, "labels": [], "thresholds": th})
    assert none.startswith("### No finding over its threshold (closest: Mass 0.25 < threshold 0.30)")


def test_preparation_steps_compare_each_step_with_the_input_at_its_size() -> None:
    from medattn.serve.views import preparation_steps

    prep = Preparation(size=24, mean=[0.5] * 3, std=[0.25] * 3, preset="cytology", denoise=True, clahe=True)
    yy, xx = np.mgrid[0:64, 0:64] / 63
    img = np.stack([100 + 30 * yy, 110 + 30 * xx, 120 + 20 * (xx * yy)], -1)  # a dull, low-contrast image
    img = np.clip(img + np.random.default_rng(0).normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    steps = preparation_steps(SimpleNamespace(preparation=prep), img)
    assert [s["name"] for s in steps] == ["input", "denoised + CLAHE", "resized to 24×24"]
    first, enhanced, small = steps
    assert math.isinf(first["psnr"]) and first["ssim"] == 1.0
    assert (small["width"], small["height"]) == (24, 24) and small["image"].shape == (24, 24, 3)
    assert 5 < enhanced["psnr"] < 60 and 0 < enhanced["ssim"] < 1 and 0 < small["ssim"] < 1
    # an input already at the model's size is not "resized": no such step is listed
    same = preparation_steps(SimpleNamespace(preparation=prep), img[:24, :24])
    assert [s["name"] for s in same] == ["input", "denoised + CLAHE"]
    # CLAHE spreads the grey levels: more RMS contrast than the input
    assert enhanced["rms_contrast"] > first["rms_contrast"]
    assert first["rms_contrast"] == pytest.approx((img @ np.array([0.299, 0.587, 0.114]) / 255).std(), rel=1e-9)
    # every step is shown at one display size, small ones enlarged
    assert len({s["display"].shape for s in steps}) == 1
    tiled = preparation_steps(SimpleNamespace(preparation=prep), img, resize=False)
    assert [s["name"] for s in tiled] == ["input", "denoised + CLAHE"]
    grey = Preparation(size=16, mean=[0.5], std=[0.25], channels=1)  # an X-ray bundle: one channel
    g = preparation_steps(SimpleNamespace(preparation=grey), img[..., 0])
    assert [s["image"].shape for s in g] == [(64, 64), (16, 16)] and 0 < g[1]["ssim"] < 1


def test_samples_come_from_the_bundle_domain_or_none(tmp_path: Path) -> None:
    from medattn.serve.samples import png_bytes, sample_images

    assert sample_images({"in_chans": 3}, tmp_path) == []  # real data, no samples of its own: none
    synth = sample_images({"in_chans": 3, "input_size": 48, "synthetic_data": True}, tmp_path, n=2)
    assert len(synth) == 2 and all(p.suffix == ".png" for p in synth)
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "cell_b.png").write_bytes(png_bytes(np.zeros((8, 8, 3), np.uint8)))
    (tmp_path / "samples" / "cell_a.jpg").write_bytes(b"x")
    (tmp_path / "samples" / "notes.txt").write_text("x")
    assert [p.name for p in sample_images({"synthetic_data": True}, tmp_path)] == ["cell_a.jpg", "cell_b.png"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "x.png").write_bytes(png_bytes(np.zeros((8, 8), np.uint8)))
    assert sample_images({}, tmp_path, folder=mine) == [mine / "x.png"]
    with pytest.raises(ConfigError, match="--samples .*not a folder"):
        sample_images({}, folder=tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no PNG, JPEG"):
        sample_images({}, folder=tmp_path / "empty")


def test_serve_refuses_a_bad_samples_folder_in_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pytest.importorskip("gradio")
    assert main(["serve", str(tmp_path / "bundle"), "--samples", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --samples {tmp_path / 'nope'}: not a folder; pass a folder of sample images"


def test_a_synthetic_bundle_shows_items_of_its_own_training_data(tmp_path: Path) -> None:
    from medattn.serve.samples import png_bytes, sample_images

    data = tmp_path / "data"
    for cls, shade in (("benign", 40), ("malignant", 200)):
        (data / cls).mkdir(parents=True)
        for i in range(3):
            (data / cls / f"{i}.png").write_bytes(png_bytes(np.full((16, 16, 3), shade + i, np.uint8)))
    meta = {"synthetic_data": True, "class_names": ["benign", "malignant"],
            "training_data": {"path": str(data), "format": "folders"}}
    got = sample_images(meta, tmp_path / "bundle", n=3)
    assert [p.name for p in got] == ["benign_0.png", "malignant_1.png", "benign_2.png"]  # classes alternate
    from PIL import Image

    assert np.asarray(Image.open(got[1]))[0, 0, 0] == 200  # the training item itself
    # the data folder is gone: synthetic images of the bundle's channels instead
    meta["training_data"]["path"] = str(tmp_path / "gone")
    assert [p.name.startswith("synthetic_") for p in sample_images(meta, None, n=2)] == [True, True]


def test_the_likeliest_tile_is_cut_as_the_model_saw_it() -> None:
    from medattn.infer.tiling import image_tiles, tile_grid
    from medattn.serve.views import likeliest_tile

    img = np.random.default_rng(0).integers(0, 256, (100, 130, 3), dtype=np.uint8)
    boxes, tiles = image_tiles(img, 48)
    score = np.linspace(0, 1, len(boxes))[::-1].copy()
    score[len(boxes) - 2] = 2.0  # the second-to-last tile (an edge tile shifted inwards) scores highest
    tile, r, c = likeliest_tile(img, tile_grid(boxes, score), 48)
    y0, x0 = boxes[len(boxes) - 2]
    assert np.array_equal(tile, img[y0:y0 + 48, x0:x0 + 48]) and (r, c) == (2, 1)
