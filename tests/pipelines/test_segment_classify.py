"""Segment-then-classify with untrained tiny bundles: emphasis semantics, API, chained bundle,
serving through the REST API, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medattn.errors import BundleError, ConfigError
from medattn.models.emphasis import emphasise, region_boxes, region_mask

CLS_META = {"task": "multiclass", "class_names": ["0_healthy", "1_mild", "2_moderate", "3_severe"], "input_size": 32,
            "in_chans": 3, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
            "recipe": {"task": {"type": "multiclass", "ordinal": True}}}
SEG_META = {"task": "segmentation", "class_names": ["background", "epithelium"], "input_size": 32, "in_chans": 3,
            "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "threshold": 0.5}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Path], np.ndarray]:
    from medattn.bundle import save_bundle
    from medattn.data.synthetic import write_graded
    from medattn.models import create_model

    root = tmp_path_factory.mktemp("chain")
    torch.manual_seed(0)
    cls = save_bundle(create_model("patch_cnn_attention", num_classes=4, width=0.25), CLS_META, root / "cls")
    seg = save_bundle(create_model("unet", num_classes=2, depth=2, width=4), SEG_META, root / "seg")
    data = write_graded(root / "graded", n_per_class=2, size=48, seed=1)
    files = sorted((data / "images").rglob("*.png"))
    labels = np.array([int(f.parent.name[0]) for f in files])
    return seg, cls, files, labels


def test_emphasis_modes_on_known_mask() -> None:
    x = torch.full((1, 3, 8, 8), 0.8)
    mask = torch.zeros((1, 8, 8), dtype=torch.bool)
    mask[0, 2:4, 2:6] = True
    mask[0, 7, 7] = True  # a small second blob: crop follows the largest region
    out = emphasise(x, mask, "mask", (8, 8), fill=0.0)
    assert out[0, :, 2, 2].tolist() == pytest.approx([0.8] * 3) and out[0, :, 0, 0].tolist() == [0.0] * 3
    out = emphasise(x, mask, "dim", (8, 8), dim=0.25, fill=0.0)
    assert out[0, 0, 0, 0].item() == pytest.approx(0.2) and out[0, 0, 3, 3].item() == pytest.approx(0.8)
    assert region_boxes(mask, margin=0.0).tolist() == [[2, 2, 6, 4]]
    assert emphasise(x, mask, "crop", (5, 5), margin=0.0).shape == (1, 3, 5, 5)
    empty = torch.zeros((1, 8, 8), dtype=torch.bool)  # a segmenter miss leaves the image whole
    assert torch.equal(emphasise(x, empty, "mask", (8, 8)), x)
    assert region_boxes(empty).tolist() == [[0, 0, 8, 8]]
    logits = torch.zeros((1, 3, 4, 4))
    logits[0, 2, :2] = 5  # three-class head: every non-background class is region
    assert region_mask(logits, (8, 8)).float().mean().item() == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="mode"):
        emphasise(x, mask, "blur", (8, 8))


@pytest.mark.parametrize("mode", ["mask", "dim", "crop"])
def test_pipeline_run_returns_both_outputs_mask_and_cam(bundles, mode: str) -> None:
    from medattn.pipelines import SegmentClassifyPipeline

    seg, cls, files, _ = bundles
    pipe = SegmentClassifyPipeline(seg, cls, mode=mode)
    assert pipe.work_size == (64 if mode == "crop" else 32)
    res = pipe.run([str(files[0]), np.zeros((40, 30, 3), np.uint8)], keep_images=True)
    r = res[0]
    assert r.mask.shape == (48, 48) and r.cam.shape == (48, 48) and r.emphasised.shape == (32, 32, 3)
    assert set(r.classification["probabilities"]) == set(CLS_META["class_names"])
    assert r.alone is not None and "label" in r.alone and 0.0 <= r.region_fraction <= 1.0
    assert res[1].mask.shape == (40, 30) and res[1].cam.shape == (40, 30)
    if mode == "crop":
        x0, y0, x1, y1 = r.box
        assert np.all(r.cam[:y0] == 0) and np.all(r.cam[y1:] == 0)


def test_wrong_bundle_roles_are_refused(bundles) -> None:
    from medattn.pipelines import SegmentClassifyPipeline

    seg, cls, _, _ = bundles
    with pytest.raises(BundleError, match="segmentation"):
        SegmentClassifyPipeline(cls, seg)


def test_paired_evaluation_same_items(bundles, tmp_path: Path) -> None:
    from medattn.metrics.compare import compare_prediction_tables
    from medattn.pipelines import SegmentClassifyPipeline, evaluate_chain

    seg, cls, files, labels = bundles
    pipe = SegmentClassifyPipeline(seg, cls, mode="dim")
    doc = evaluate_chain(pipe, [str(f) for f in files], labels, n_boot=30, out_dir=tmp_path)
    assert doc["ordinal"] is True and doc["n_items"] == len(files)
    for k in ("accuracy", "macro_f1", "qwk"):
        m = doc["metrics"][k]
        assert m["diff"] == pytest.approx(m["value_b"] - m["value_a"])
    again = compare_prediction_tables(tmp_path / "alone", tmp_path / "chained", n_boot=30)
    assert again["metrics"]["accuracy"]["diff"] == pytest.approx(doc["metrics"]["accuracy"]["diff"])


def test_chained_bundle_round_trip_tamper_and_serve(bundles, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from medattn.bundle import load_bundle
    from medattn.pipelines import SegmentClassifyPipeline, save_chained_bundle
    from medattn.serve.api import create_app

    seg, cls, files, _ = bundles
    chain = save_chained_bundle(seg, cls, tmp_path / "chain", mode="crop", margin=0.1)
    doc = json.loads((chain / "pipeline.json").read_text())
    assert doc["mode"] == "crop" and set(doc) >= {"segmenter", "classifier", "work_size"}
    pred = load_bundle(chain)
    direct = SegmentClassifyPipeline(seg, cls, mode="crop", margin=0.1)
    p_chain, _ = direct.probabilities([str(files[0])])
    out = pred.infer([str(files[0])])[0]
    assert out["emphasis"] == "crop" and len(out["region_box"]) == 4
    assert list(out["probabilities"].values()) == pytest.approx(p_chain[0].tolist(), abs=1e-5)
    with TestClient(create_app(chain, ui=False)) as c:
        r = c.post("/v1/predict", files={"file": ("a.png", files[0].read_bytes(), "image/png")})
        assert r.status_code == 200, r.text
        body = r.json()["predictions"][0]
        assert "region_fraction" in body and body["label"] in CLS_META["class_names"]
        card = c.get("/v1/model").json()
        assert card["architecture"]["name"] == "segment_classify" and card["pipeline"]["mode"] == "crop"
        r = c.post("/v1/explain", files={"file": ("a.png", files[0].read_bytes(), "image/png")},
                   data={"method": "gradcam", "format": "json"})
        assert r.status_code == 200, r.text
    # a swapped sub-bundle is refused
    import shutil

    other = tmp_path / "other"
    torch.manual_seed(1)
    from medattn.bundle import save_bundle
    from medattn.models import create_model

    save_bundle(create_model("patch_cnn_baseline", num_classes=4, width=0.25), CLS_META, other)
    shutil.rmtree(chain / "classifier")
    shutil.copytree(other, chain / "classifier")
    with pytest.raises(BundleError, match="not the classifier"):
        load_bundle(chain)


def test_cli_segment_classify_and_save(bundles, tmp_path: Path) -> None:
    from medattn.cli import main

    seg, cls, files, _ = bundles
    out = tmp_path / "out"
    code = main(["pipeline", "segment-classify", "--segmenter", str(seg), "--classifier", str(cls),
                 str(files[0].parent), "--mode", "mask", "--out", str(out)])
    assert code == 0
    stem = files[0].stem
    for suffix in ("mask", "region", "emphasised", "cam"):
        assert (out / f"{stem}_{suffix}.png").is_file()
    rows = (out / "results.csv").read_text().splitlines()
    assert rows[0].startswith("source,label") and len(rows) == 1 + len(list(files[0].parent.glob("*.png")))
    assert main(["pipeline", "save", str(tmp_path / "c"), "--segmenter", str(seg), "--classifier", str(cls)]) == 0
    assert main(["pipeline", "segment-classify", "--chain", str(tmp_path / "c"), str(files[0]),
                 "--out", str(tmp_path / "o2"), "--cam-method", "none"]) == 0
    assert main(["pipeline", "segment-classify", "--segmenter", str(seg), str(files[0])]) == 2
    assert main(["pipeline", "segment-classify", "--segmenter", str(seg), "--classifier", str(cls),
                 "--mode", "blur", str(files[0])]) == 2
