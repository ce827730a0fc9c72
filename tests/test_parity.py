"""One image, one answer: the same files through every door get the same probabilities and warnings.

Doors: ``medattn predict`` (:func:`run_predict`), ``POST /v1/predict``, the dashboard's answer,
``medattn evaluate --data`` (its predictions file), ``medattn explain`` and ``medattn slide`` (a
lossless slide built from the large tile). Inputs: an RGB PNG, an RGBA PNG, a 16-bit PNG, a greyscale
JPEG, a DICOM, and a 1000×1000 field of view (tiled by the bundle's rule). The training evaluation
transform gives the same tensor as the inference preparation for each of them.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

TOL = 1e-6


def _dicom(pixels: np.ndarray) -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.fixture(scope="module")
def parity(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A smoke herlev-cpu bundle (class folders, CBAM-ResNet-18, contract + OOD + conformal sets)
    and one file of each kind, one per class folder."""
    from medattn.data.images import read_image
    from medattn.engine.runner import train_run

    root = tmp_path_factory.mktemp("parity")
    run = root / "run"
    train_run("herlev-cpu", out=run, smoke=True,
              overrides=["data.image_size=48", "evaluation.tta=false", "evaluation.n_boot=50"])
    info = json.loads((run / "run.json").read_text())
    files = pd.read_csv(run / "split.csv")
    train = [Path(info["data"]) / f for f in files[files["split"] == "train"]["file"]]
    cells = [read_image(f) for f in train[:8]]
    meta = json.loads((run / "bundle" / "bundle.json").read_text())
    data = root / "doors"
    names = meta["class_names"]
    for n in names:
        (data / n).mkdir(parents=True)
    rgb = cells[0]
    Image.fromarray(rgb).save(data / names[0] / "rgb.png")
    alpha = np.full(rgb.shape[:2] + (1,), 255, np.uint8)
    alpha[:, : rgb.shape[1] // 3] = 0  # a transparent band: composited over white everywhere
    Image.fromarray(np.concatenate([cells[1], alpha], 2), "RGBA").save(data / names[1] / "rgba.png")
    g16 = (cells[2].mean(2) * 64 + 500).astype(np.uint16)
    Image.fromarray(g16).save(data / names[2] / "grey16.png")
    Image.fromarray(cells[3].mean(2).astype(np.uint8), "L").save(data / names[3] / "grey.jpg", quality=95)
    (data / names[4] / "scan.dcm").write_bytes(_dicom((cells[4].mean(2) * 16).astype(np.uint16)))
    size = cells[5].shape[0]
    reps = -(-1000 // size)
    big = np.concatenate([np.concatenate([cells[(i + j) % 8] for j in range(reps)], 1) for i in range(reps)], 0)
    big = np.ascontiguousarray(big[:1000, :1000])
    Image.fromarray(big).save(data / names[5] / "field.png")
    Image.fromarray(cells[6]).save(data / names[6] / "cell.png")
    return {"run": run, "bundle": run / "bundle", "data": data, "big": big,
            "files": sorted(p for p in data.rglob("*") if p.is_file())}


def _codes(ws: object) -> list[str]:
    if isinstance(ws, str):
        ws = json.loads(ws)
    return sorted(w["code"] for w in ws or [])


def _probs(ans: dict, names: list[str]) -> np.ndarray:
    return np.array([float(ans["probabilities"][n]) for n in names])


def test_every_door_gives_the_same_answer(parity: dict, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from medattn.bundle import load_bundle
    from medattn.engine.evaluate_cli import evaluate_path
    from medattn.explain.explain import explain
    from medattn.infer.predict import PredictOptions, run_predict
    from medattn.serve.api import create_app
    from medattn.serve.ui import dashboard_answer

    pred = load_bundle(parity["bundle"])
    names = pred.class_names
    files = parity["files"]
    ref = {f.name: a for f, a in zip(files, pred.infer(files), strict=True)}
    assert ref["field.png"]["handling"] == "tiled" and ref["rgb.png"]["handling"] in ("as-is", "resized")
    assert "channels" in _codes(ref["grey.jpg"]["warnings"])  # a grey image for a colour model is flagged

    # medattn predict
    opts = PredictOptions(out=tmp_path / "pred", batch_size=4)
    run_predict(pred, [str(parity["data"])], opts)
    rows = {Path(r["path"]).name: r for r in pd.read_csv(opts.out / "predictions.csv").to_dict("records")}
    for f in files:
        got = np.array([float(rows[f.name][f"prob_{n}"]) for n in names])
        np.testing.assert_allclose(got, _probs(ref[f.name], names), atol=TOL, err_msg=f"predict {f.name}")
        assert _codes(rows[f.name]["warnings"]) == _codes(ref[f.name]["warnings"]), f.name

    # REST and the dashboard
    with TestClient(create_app(parity["bundle"], ui=False, max_wait_ms=1)) as c:
        for f in files:
            (p,) = c.post("/v1/predict", files={"file": (f.name, f.read_bytes())}).json()["predictions"]
            np.testing.assert_allclose(_probs(p, names), _probs(ref[f.name], names), atol=TOL, err_msg=f"REST {f.name}")
            assert _codes(p["warnings"]) == _codes(ref[f.name]["warnings"]) and p["handling"] == ref[f.name]["handling"]
            d = dashboard_answer(pred, f)
            np.testing.assert_allclose(_probs(d, names), _probs(ref[f.name], names), atol=TOL)
            assert _codes(d["warnings"]) == _codes(ref[f.name]["warnings"])

    # medattn explain: the same answers (and warnings) beside the maps
    for e in explain(pred, files, method="gradcam"):
        f = files[e.item]
        assert e.answer is not None and _codes(e.answer["warnings"]) == _codes(ref[f.name]["warnings"])
        np.testing.assert_allclose(_probs(e.answer, names), _probs(ref[f.name], names), atol=TOL)
        assert e.probability == pytest.approx(ref[f.name]["probabilities"][e.class_name], abs=TOL)
        if f.name == "field.png":
            assert e.heatmap_at().shape == (1000, 1000)

    # medattn evaluate --data: every file scored through the same entry (the field tiled, not squashed)
    ev = evaluate_path(parity["bundle"], data=parity["data"], out=tmp_path / "eval")
    tp = pd.read_csv(Path(ev["out"]) / "test_predictions.csv")
    key = tp.columns[0]
    for r in tp.to_dict("records"):
        name = Path(str(r[key])).name
        got = np.array([float(r[f"prob_{n}"]) for n in names])
        np.testing.assert_allclose(got, _probs(ref[name], names), atol=TOL, err_msg=f"evaluate {name}")
    assert len(tp) == len(files)


def test_slide_regions_are_the_tiles_of_predict(parity: dict, tmp_path: Path) -> None:
    """A lossless slide of the 1000×1000 field at the model's own scale: every slide tile gets the
    probability the same tile gets inside ``medattn predict``'s tiling of the PNG."""
    pytest.importorskip("tiffslide")
    import tifffile

    from medattn.bundle import load_bundle
    from medattn.infer.slide import SlideOptions, run_slide
    from medattn.infer.tiling import image_tiles

    pred = load_bundle(parity["bundle"])
    big = parity["big"]
    slide = tmp_path / "field.tif"
    tifffile.imwrite(slide, big, photometric="rgb", tile=(256, 256), compression="zlib",
                     description="Aperio Image Library medattn\n1000x1000 |MPP = 0.5")
    opts = SlideOptions(out=tmp_path / "slide", mpp=0.5, model_mpp=0.5, min_tissue=0.0, workers=0)
    run_slide(pred, slide, opts)
    tiles = pd.read_csv(opts.out / "tiles.csv")
    window = pred.input_hw[0]
    boxes, crops = image_tiles(big, window)
    by_box = dict(zip(boxes, pred.forward(pred.prepare_input(big)), strict=True))
    assert len(tiles) == (1000 // window) ** 2
    names = pred.class_names
    for r in tiles.to_dict("records"):
        p = by_box[(int(r["y"]), int(r["x"]))]
        got = np.array([float(r[f"prob_{n}"]) for n in names])
        np.testing.assert_allclose(got, p, atol=TOL, err_msg=f"tile {r['tile']}")


def test_training_eval_transform_is_the_inference_preparation(parity: dict) -> None:
    """The dataset a training run evaluates with, item by item, equals the bundle's preparation of
    the same decoded file (no tiling: the training transform never tiles)."""
    import yaml

    from medattn.bundle import load_bundle
    from medattn.engine.config import recipe_from_dict
    from medattn.engine.datamodule import build_data

    pred = load_bundle(parity["bundle"])
    recipe = recipe_from_dict(yaml.safe_load((parity["run"] / "recipe.yaml").read_text()), "recipe")
    raw = recipe.model_dump(mode="json")
    raw["data"]["class_names"] = pred.class_names
    rd = build_data(recipe_from_dict(raw, "recipe"), parity["data"], None, required=("test",), every_item=True)
    ds = rd.test
    for i, f in enumerate(ds.item_ids()):
        x_train = ds[i][0]
        x_infer = pred.prepare_input(pred.decode(Path(parity["data"]) / f), tile=False).x[0]
        torch.testing.assert_close(x_train, x_infer, atol=1e-6, rtol=0, msg=f)
