"""No Python object reprs in what a user reads (issue 22.5): the bad-input paths of the CLI
(corrupt, empty and truncated images, junk slides and masks, malformed bundles, wrong options) are
run, and their stdout/stderr and every CSV/JSON they write are searched for ``object at 0x``,
``<_io.``, ``<class '``, attribute errors and tracebacks."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medattn.cli import main

REPR = re.compile(r"object at 0x[0-9a-fA-F]+|<_io\.|<class '|<[A-Za-z_]\w*(\.\w+)+[ >]|object has no attribute"
                  r"|Traceback")


def _encoded(fmt: str) -> bytes:
    a = (np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, fmt)
    return buf.getvalue()


def _corrupt_images(folder: Path) -> Path:
    """Class folders: each kind of broken file the readers see, plus readable ones."""
    bad, good = folder / "a", folder / "b"
    bad.mkdir(parents=True)
    good.mkdir()
    for fmt, ext in (("JPEG", "jpg"), ("PNG", "png"), ("TIFF", "tif"), ("BMP", "bmp")):
        raw = _encoded(fmt)
        (bad / f"trunc.{ext}").write_bytes(raw[: len(raw) // 2])
        (bad / f"zeros.{ext}").write_bytes(b"\x00" * 100)
        (bad / f"empty.{ext}").write_bytes(b"")
        flipped = bytearray(raw)
        flipped[len(raw) // 2: len(raw) // 2 + 50] = b"\xff" * 50
        (bad / f"scrambled.{ext}").write_bytes(bytes(flipped))
    (bad / "text.png").write_text("hello")
    (bad / "gif.png").write_bytes(b"GIF89a" + b"\x00" * 50)
    (bad / "head.png").write_bytes(_encoded("PNG")[:20])
    (bad / "head.bmp").write_bytes(_encoded("BMP")[:20])
    for i in range(4):
        Image.fromarray(np.full((40, 40, 3), 40 * i, np.uint8)).save(bad / f"ok{i}.png")
        Image.fromarray(np.full((40, 40, 3), 200 - 40 * i, np.uint8)).save(good / f"ok{i}.png")
    return folder


def _decoder_cases(folder: Path) -> Path:
    """Inputs whose message comes from the decoder itself (``medattn.decode``)."""
    folder.mkdir(parents=True)
    (folder / "head.jpg").write_bytes(_encoded("JPEG")[:20])
    (folder / "head.tif").write_bytes(_encoded("TIFF")[:20])
    (folder / "junk.dcm").write_bytes(b"DICM" * 50)
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(folder / "ok.png")
    return folder


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from medattn.bundle import save_bundle
    from medattn.models import create_model

    torch.manual_seed(0)
    meta = {"task": "binary", "class_names": ["a", "b"], "input_size": 32, "in_chans": 3,
            "mean": [0.5] * 3, "std": [0.25] * 3, "threshold": 0.5, "recipe": {"data": {"mpp": 2.0}}}
    return save_bundle(create_model("patch_cnn_baseline", num_classes=1, width=0.125), meta,
                       tmp_path_factory.mktemp("b") / "bundle")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _corrupt_images(tmp_path_factory.mktemp("bad") / "data")


class Texts:
    """Everything the user reads: console output, log lines and the text files under ``outputs``."""

    def __init__(self, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
        self.capsys, self.caplog, self.parts = capsys, caplog, []  # type: list[tuple[str, str]]

    def run(self, argv: list[str], *outputs: Path) -> int:
        self.caplog.clear()
        code = main(argv)
        cap = self.capsys.readouterr()
        self.parts.append((" ".join(argv[:2]) + " (console)", cap.out + cap.err + self.caplog.text))
        for root in outputs:
            files = [root] if root.is_file() else sorted(root.rglob("*")) if root.exists() else []
            for f in files:
                if f.suffix in (".csv", ".json", ".txt", ".geojson"):
                    self.parts.append((str(f), f.read_text(errors="replace")))
        return code

    def reprs(self) -> list[str]:
        return [f"{where}: {m.group(0)} in ...{text[max(0, m.start() - 80):m.end() + 20]}..."
                for where, text in self.parts for m in REPR.finditer(text)]


def test_bad_images_through_every_reader(bundle: Path, data: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    t = Texts(capsys, caplog)
    imgs = str(data / "a")
    assert t.run(["predict", str(bundle), imgs, "--out", str(tmp_path / "p")], tmp_path / "p") == 0
    assert t.run(["predict", str(bundle), imgs, "--out", str(tmp_path / "pe"), "--on-bad-file", "error"]) == 2
    assert t.run(["validate", str(data), "--out", str(tmp_path / "v.csv")], tmp_path / "v.csv") == 1
    assert t.run(["audit", str(data), "--out", str(tmp_path / "audit.json")], tmp_path / "audit.json") == 0
    assert t.run(["audit", str(data), "--out", str(tmp_path / "a2.json"), "--on-bad-file", "error"]) == 2
    assert t.run(["explain", str(bundle), imgs, "--out", str(tmp_path / "e")], tmp_path / "e") == 0
    assert t.run(["explain", str(bundle), imgs, "--out", str(tmp_path / "ee"), "--on-bad-file", "error"]) == 2
    assert t.run(["overview", str(data), "--out", str(tmp_path / "ov")], tmp_path / "ov") == 0
    assert t.run(["train", "pcam-baseline", "--smoke", "--data", str(data), "--set", "data.format=folders",
                  "--on-bad-file", "error", "--out", str(tmp_path / "t")]) == 2
    text = "\n".join(p for _, p in t.parts)
    assert "trunc.jpg" in text and "empty (0 bytes)" in text  # the bad files were seen and named
    assert t.reprs() == []


def test_bad_masks_slides_bundles_and_options(bundle: Path, data: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    t = Texts(capsys, caplog)
    gt, pr = tmp_path / "gt", tmp_path / "pr"
    gt.mkdir()
    pr.mkdir()
    for name in ("m1.png", "m2.png", "m3.tif"):
        Image.fromarray(np.eye(16, dtype=np.uint8)).save(gt / name)
        Image.fromarray(np.eye(16, dtype=np.uint8)).save(pr / name)
    (pr / "m2.png").write_bytes(b"\x89PNG junk")
    (pr / "m3.tif").write_bytes(b"II*\x00junk")
    assert t.run(["seg-metrics", str(gt), str(pr), "--out", str(tmp_path / "s.csv"), "--on-bad-file", "skip"],
                 tmp_path / "s.csv") == 0
    assert t.run(["seg-metrics", str(gt), str(pr), "--out", str(tmp_path / "s2.csv"), "--on-bad-file", "error"]) == 2

    junk, trunc = tmp_path / "junk.svs", tmp_path / "trunc.tif"
    junk.write_bytes(b"not a slide")
    trunc.write_bytes(b"II*\x00" + b"\x00" * 10)
    (tmp_path / "empty.svs").write_bytes(b"")
    assert t.run(["slide", str(bundle), str(junk), str(trunc), str(tmp_path / "empty.svs"),
                  "--out", str(tmp_path / "sl"), "--workers", "0"], tmp_path / "sl") == 2

    broken = {"no-json": None, "bad-json": "{nope", "list-json": "[1, 2]", "null-fields": json.dumps(
        {"architecture": None, "class_names": None, "input_size": None, "in_chans": None, "mean": None,
         "std": None, "weights_sha256": None})}
    for name, text in broken.items():
        b = tmp_path / name
        b.mkdir()
        (b / "model.safetensors").write_bytes((bundle / "model.safetensors").read_bytes())
        if text is not None:
            (b / "bundle.json").write_text(text)
        for verb in (["predict", str(b), str(data / "b"), "--out", str(tmp_path / "o")], ["info", str(b)],
                     ["export", str(b), "--out", str(tmp_path / "m.onnx")], ["serve", str(b), "--port", "1"]):
            assert t.run(verb) == 2
    (tmp_path / "junk.zip").write_bytes(b"PK junk")
    assert t.run(["predict", str(tmp_path / "junk.zip"), str(data / "b"), "--out", str(tmp_path / "o")]) == 2

    for argv in (["predict", str(bundle), str(data / "b"), "--out", "o", "--alpha", "x"],
                 ["predict", str(bundle), str(tmp_path / "nothing"), "--out", str(tmp_path / "o")],
                 ["slide", str(bundle), "s.svs", "--out", "o", "--region", "a,b"],
                 ["evaluate", str(bundle), "--split", "x.csv"], ["compare", "a", "b", "--n-boot", "x"],
                 ["explain", str(bundle), str(tmp_path / "nothing")], ["train", "no-such-recipe"],
                 ["train", "pcam-baseline", "--set", "optimizer.lr=abc"], ["synth", "nope", "x"]):
        assert t.run(argv) == 2
    assert t.reprs() == []


def test_decoder_messages_have_no_reprs(bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    t = Texts(capsys, caplog)
    folder = _decoder_cases(tmp_path / "dec")
    assert t.run(["predict", str(bundle), str(folder), "--out", str(tmp_path / "p")], tmp_path / "p") == 0
    assert "head.jpg" in (tmp_path / "p" / "bad_files.csv").read_text()
    assert t.run(["explain", str(bundle), str(folder / "head.jpg"), "--out", str(tmp_path / "e")]) == 2
    assert t.reprs() == []
