"""ONNX (dynamic batch) and TorchScript exports agree with PyTorch within 1e-4."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medattn.bundle import save_bundle
from medattn.errors import ConfigError, MedattnError
from medattn.models import create_model, list_models

pytest.importorskip("onnxruntime")


def _bundle(tmp: Path, name: str, kwargs: dict, task: str, classes: list[str], size: int) -> Path:
    if name not in list_models():
        pytest.skip(f"model '{name}' is not registered yet")
    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    meta = {"task": task, "class_names": classes, "input_size": size, "in_chans": 3,
            "mean": [0.5] * 3, "std": [0.25] * 3}
    return save_bundle(model, meta, tmp / f"{name}_bundle")


CASES = {
    "pcam_cnn": ("patch_cnn_attention", {"width": 0.25}, "binary", ["normal", "tumour"], 48),
    "cbam_resnet": ("resnet18", {"attention": "cbam", "num_classes": 5}, "multiclass", list("abcde"), 32),
    "unet": ("unet", {"num_classes": 1, "depth": 2, "width": 8, "skip_attention": "ag"}, "segmentation",
             ["background", "nucleus"], 32),
    # data-dependent crop (torch-only labelling + RoIAlign as matrix products) inside the graph
    "agcnn": ("agcnn", {"num_classes": 3, "backbone": "resnet18", "crop_size": 32}, "multilabel",
              ["a", "b", "c"], 48),
}


@pytest.mark.parametrize("case", [
    "pcam_cnn",
    pytest.param("cbam_resnet", marks=pytest.mark.slow),
    "unet",
    pytest.param("agcnn", marks=pytest.mark.slow),
])
def test_onnx_and_torchscript_parity(tmp_path: Path, case: str) -> None:
    import onnxruntime as ort

    from medattn.export import export_bundle

    name, kw, task, classes, size = CASES[case]
    b = _bundle(tmp_path, name, kw, task, classes, size)
    res = export_bundle(b, "onnx", tmp_path / "m.onnx")
    assert res["max_abs_diff"] <= 1e-4 and res["batches"] == [2, 3]
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert not isinstance(sess.get_inputs()[0].shape[0], int)  # the batch axis is symbolic
    five = sess.run(None, {sess.get_inputs()[0].name: np.zeros((5, 3, size, size), np.float32)})[0]
    assert five.shape[0] == 5
    side = json.loads((tmp_path / "m.onnx.json").read_text())
    assert side["bundle"]["class_names"] == classes and side["export"]["format"] == "onnx"
    ts = export_bundle(b, "torchscript", tmp_path / "m.pt")
    assert ts["max_abs_diff"] <= 1e-4
    loaded = torch.jit.load(str(tmp_path / "m.pt"))
    assert loaded(torch.zeros(4, 3, size, size)).shape[0] == 4


def test_export_errors(tmp_path: Path) -> None:
    from medattn.export import export_bundle

    b = _bundle(tmp_path, *CASES["pcam_cnn"][:2], *CASES["pcam_cnn"][2:])
    with pytest.raises(ConfigError, match="onnx, torchscript"):
        export_bundle(b, "tflite")
    with pytest.raises(MedattnError):
        export_bundle(tmp_path / "missing", "onnx")
    (tmp_path / "adir").mkdir()
    with pytest.raises(ConfigError, match="folder"):
        export_bundle(b, "onnx", tmp_path / "adir")
    assert not list(tmp_path.glob(".m*.tmp"))


def test_export_cli(tmp_path: Path) -> None:
    from medattn.cli import main

    b = _bundle(tmp_path, *CASES["pcam_cnn"][:2], *CASES["pcam_cnn"][2:])
    assert main(["export", str(b), "--to", "torchscript", "--out", str(tmp_path / "x.pt")]) == 0
    assert (tmp_path / "x.pt").is_file()
    assert main(["export", str(b), "--to", "nope"]) == 2
    assert main(["serve", str(b), "--api-key-env", "MEDATTN_TEST_UNSET_VAR"]) == 2
    assert main(["serve", str(tmp_path / "missing")]) == 2
