"""Bundles: round trip, tamper and pickle refusal, safe decoding, DICOM windowing."""

from __future__ import annotations

import builtins
import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from medattn.bundle import (
    ImageTooLargeError,
    UnsupportedImageError,
    load_bundle,
    read_dicom,
    read_image,
    save_bundle,
    sniff_format,
)
from medattn.errors import BundleError, DataError, MedattnError, ModelError
from medattn.serve.samples import png_bomb, png_bytes

META = {"task": "binary", "class_names": ["normal", "tumour"], "input_size": 32, "in_chans": 3,
        "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "threshold": 0.4}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medattn.models import create_model

    torch.manual_seed(0)
    model = create_model("patch_cnn_attention", width=0.25)
    return save_bundle(model, META, tmp_path_factory.mktemp("b") / "bundle")


def _rgb(seed: int = 0, size: int = 40) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_round_trip_folder_and_zip(bundle: Path, tmp_path: Path) -> None:
    pred = load_bundle(bundle, device="cpu")
    img = _rgb()
    zipped = save_bundle(pred.model, META, tmp_path / "b.zip")
    pz = load_bundle(zipped, device="cpu")
    a, b = pred.infer(img)[0], pz.infer(img)[0]
    assert a == b and a["threshold"] == 0.4 and a["label"] in META["class_names"]
    assert abs(sum(a["probabilities"].values()) - 1) < 1e-6
    f = tmp_path / "x.jpg"  # a PNG named .jpg: the content decides
    f.write_bytes(png_bytes(img))
    outs = [pred.infer(x)[0]["probabilities"]["tumour"] for x in (img, f, str(f), png_bytes(img))]
    assert max(outs) - min(outs) < 1e-6


def test_tampered_weights_refused(bundle: Path, tmp_path: Path) -> None:
    import shutil

    bad = tmp_path / "tampered"
    shutil.copytree(bundle, bad)
    w = bytearray((bad / "model.safetensors").read_bytes())
    w[-1] ^= 1
    (bad / "model.safetensors").write_bytes(bytes(w))
    with pytest.raises(BundleError, match="do not match"):
        load_bundle(bad)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - runs at unpickling time: creates the marker file
        return (builtins.open, (str(self.marker), "w"))


@pytest.mark.parametrize("suffix", [".pt", ".ckpt"])
def test_malicious_pickle_refused_everywhere(bundle: Path, tmp_path: Path, suffix: str) -> None:
    import hashlib
    import json
    import shutil

    from medattn.models import create_model
    from medattn.models.weights import read_state_dict

    marker = tmp_path / "pwned"
    zipped = tmp_path / f"evil_zip{suffix}"  # torch.save's zip format
    torch.save({"state_dict": {"w": _Evil(marker)}}, zipped)
    raw = tmp_path / f"evil_raw{suffix}"  # a bare pickle stream
    raw.write_bytes(pickle.dumps({"w": _Evil(marker)}))
    for f in (zipped, raw):
        with pytest.raises(MedattnError):
            read_state_dict(f)
        with pytest.raises(MedattnError):
            create_model("patch_cnn_baseline", width=0.25, pretrained=str(f))
        with pytest.raises(BundleError):
            load_bundle(f)
    # a bundle whose weights were swapped for the pickle (checksum updated to match)
    evil_bundle = tmp_path / "evil_bundle"
    shutil.copytree(bundle, evil_bundle)
    data = raw.read_bytes()
    (evil_bundle / "model.safetensors").write_bytes(data)
    meta = json.loads((evil_bundle / "bundle.json").read_text())
    meta["weights_sha256"] = hashlib.sha256(data).hexdigest()
    (evil_bundle / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError):
        load_bundle(evil_bundle)
    assert not marker.exists(), "unpickling ran code"


def test_sniffing_and_limits(tmp_path: Path) -> None:
    img = _rgb(1, 50)
    png = png_bytes(img)
    assert sniff_format(png) == "png" and sniff_format(b"hello") is None
    assert np.array_equal(np.asarray(read_image(png)), img)
    with pytest.raises(UnsupportedImageError):
        read_image(b"just some text, not an image")
    with pytest.raises(DataError, match="truncated"):
        read_image(png[: len(png) // 2])
    with pytest.raises(ImageTooLargeError):
        read_image(png, max_pixels=49 * 50)
    with pytest.raises(ImageTooLargeError):
        read_image(png, max_bytes=len(png) - 1)
    import time

    t = time.perf_counter()
    with pytest.raises(ImageTooLargeError):  # 30000×30000 declared: refused from the header
        read_image(png_bomb(30000, 30000))
    with pytest.raises(ImageTooLargeError):  # under Pillow's own limit, over ours
        read_image(png_bomb(8000, 8000), max_pixels=10_000_000)
    assert time.perf_counter() - t < 2.0
    with pytest.raises(DataError, match="empty"):
        read_image(b"")


def _dicom(pixels: np.ndarray, photometric: str = "MONOCHROME2", **tags: object) -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = tags.pop("transfer_syntax", ExplicitVRLittleEndian)
    pixel_data = tags.pop("pixel_data", None)
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    for k, v in tags.items():
        setattr(ds, k, v)
    ds.PixelData = pixel_data if pixel_data is not None else pixels.astype(np.uint16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_dicom_window_rescale_and_monochrome1(bundle: Path) -> None:
    ramp = np.tile(np.arange(0, 4096, 64, dtype=np.uint16), (8, 1))  # 8×64, stored values 0..4032
    plain = read_dicom(_dicom(ramp))
    assert plain.dtype == np.uint8 and plain[0, 0] == 0 and plain[0, -1] == 255
    # rescale (HU-like) then a window: values below the window are black, above are white
    win = read_dicom(_dicom(ramp, RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=0, WindowWidth=1000))
    hu = ramp.astype(float) - 1024
    assert (win[hu <= -500] == 0).all() and (win[hu >= 500] == 255).all()
    mid = (hu > -400) & (hu < 400)
    assert 0 < win[mid].min() < win[mid].max() < 255 and (np.diff(win[0].astype(int)) >= 0).all()
    inv = read_dicom(_dicom(ramp, "MONOCHROME1"))
    assert np.array_equal(inv, 255 - plain)
    pred = load_bundle(bundle, device="cpu")
    assert set(pred.infer(_dicom(ramp))[0]["probabilities"]) == set(META["class_names"])
    with pytest.raises(ImageTooLargeError):
        read_dicom(_dicom(ramp), max_pixels=100)


def test_dicom_compressed_without_decoder_is_a_clear_error() -> None:
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    data = _dicom(np.zeros((4, 4), np.uint16), transfer_syntax=JPEG2000Lossless,
                  pixel_data=encapsulate([b"\x00garbage-not-a-codestream"]))
    with pytest.raises(DataError):
        read_dicom(data)


def test_bad_bundles(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="bundle.json"):
        load_bundle(tmp_path / "empty")
    notzip = tmp_path / "x.zip"
    notzip.write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(BundleError):
        load_bundle(notzip)


def test_predictor_rejects_odd_arrays(bundle: Path) -> None:
    pred = load_bundle(bundle, device="cpu")
    with pytest.raises(DataError):
        pred.infer(np.zeros((2, 3, 4, 5)))
    with pytest.raises(DataError):
        pred.infer(object())
    assert pred.infer(np.linspace(0, 1, 32 * 32).reshape(32, 32))[0]["label"] in META["class_names"]


def test_weights_reader_accepts_plain_tensor_checkpoints(tmp_path: Path) -> None:
    from medattn.models.weights import read_state_dict

    f = tmp_path / "ok.pt"
    torch.save({"w": torch.ones(2)}, f)
    assert torch.equal(read_state_dict(f)["w"], torch.ones(2))
    assert issubclass(ModelError, MedattnError)
