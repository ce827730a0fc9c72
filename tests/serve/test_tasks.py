"""Serving U-Net (segmentation) and AG-CNN (multilabel) bundles; the micro-batcher on its own."""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from medattn.models import list_models  # noqa: E402
from medattn.serve.samples import png_bytes  # noqa: E402


def _client(tmp: Path, name: str, kwargs: dict, task: str, classes: list[str], size: int) -> TestClient:
    if name not in list_models():
        pytest.skip(f"model '{name}' is not registered yet")
    from medattn.bundle import save_bundle
    from medattn.models import create_model
    from medattn.serve.api import create_app

    torch.manual_seed(0)
    meta = {"task": task, "class_names": classes, "input_size": size, "in_chans": 3, "mean": [0.5] * 3,
            "std": [0.25] * 3}
    return TestClient(create_app(save_bundle(create_model(name, **kwargs), meta, tmp / name), ui=False))


PNG = png_bytes(np.random.default_rng(2).integers(0, 256, (40, 40, 3), dtype=np.uint8))


def test_unet_bundle(tmp_path: Path) -> None:
    from PIL import Image

    with _client(tmp_path, "unet", {"num_classes": 1, "depth": 2, "width": 8, "skip_attention": "ag"},
                 "segmentation", ["background", "nucleus"], 32) as c:
        assert "segmentation" in c.get("/v1/model").json()["explain_methods"]
        (p,) = c.post("/v1/predict", files={"file": ("a.png", PNG)}).json()["predictions"]
        assert set(p["class_fractions"]) == {"background", "nucleus"} and p["mask_shape"] == [40, 40]  # own size, tiled
        assert abs(sum(p["class_fractions"].values()) - 1) < 1e-6
        r = c.post("/v1/explain", files={"file": ("a.png", PNG)}, data={"method": "segmentation"})
        assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size[0] >= 224
        cam = c.post("/v1/explain", files={"file": ("a.png", PNG)}, data={"method": "gradcam"})
        assert cam.status_code == 200, cam.text


def test_agcnn_bundle(tmp_path: Path) -> None:
    from PIL import Image

    with _client(tmp_path, "agcnn", {"num_classes": 3, "backbone": "resnet18", "crop_size": 32},
                 "multilabel", ["atelectasis", "effusion", "mass"], 64) as c:
        (p,) = c.post("/v1/predict", files={"file": ("x.png", PNG)}).json()["predictions"]
        assert set(p["probabilities"]) == {"atelectasis", "effusion", "mass"} and "labels" in p
        r = c.post("/v1/explain", files={"file": ("x.png", PNG)}, data={"method": "agcnn", "format": "json"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["box"]) == 4 and set(body["branches"]) == {"global", "local", "fusion"}
        Image.open(io.BytesIO(base64.b64decode(body["crop_png_base64"]))).verify()


def test_micro_batcher_batches_and_reports_errors() -> None:
    from medattn.serve.batching import BatcherBusy, MicroBatcher

    seen: list[int] = []

    def fn(x: torch.Tensor) -> np.ndarray:
        seen.append(len(x))
        if (x < 0).any():
            raise ValueError("negative input")
        return x.sum((1, 2, 3)).numpy()

    b = MicroBatcher(fn, max_batch=8, max_wait_ms=50).start()

    async def go() -> list[float]:
        return await asyncio.gather(*(b.submit(torch.full((1, 2, 2), float(i))) for i in range(20)))

    out = asyncio.run(go())
    assert [float(v) for v in out] == [4.0 * i for i in range(20)]
    assert max(seen) == 8 and len(seen) < 20 and b.stats.items == 20

    async def bad() -> None:
        await b.submit(torch.full((1, 2, 2), -1.0))

    with pytest.raises(ValueError, match="negative"):
        asyncio.run(bad())
    b.stop()
    with pytest.raises(BatcherBusy):
        asyncio.run(bad())
