"""REST API: every endpoint, every refusal (4xx JSON, never 5xx), API key, batching."""

from __future__ import annotations

import base64
import concurrent.futures as cf
import io
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from medattn.serve.limits import Limits  # noqa: E402
from medattn.serve.samples import malformed_uploads, png_bytes  # noqa: E402

META = {"task": "binary", "class_names": ["normal", "tumour"], "input_size": 48, "in_chans": 3,
        "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "threshold": 0.5}
LIMITS = Limits(max_upload_bytes=256 << 10, max_files=4, max_pixels=4_000_000)
KEY = "s3cret-key"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medattn.bundle import save_bundle
    from medattn.models import create_model

    torch.manual_seed(0)
    return save_bundle(create_model("patch_cnn_attention", width=0.25), META, tmp_path_factory.mktemp("api") / "b")


@pytest.fixture(scope="module")
def client(bundle: Path):
    from medattn.serve.api import create_app

    with TestClient(create_app(bundle, limits=LIMITS, ui=False, max_wait_ms=20)) as c:
        yield c


@pytest.fixture(scope="module")
def png() -> bytes:
    return png_bytes(np.random.default_rng(0).integers(0, 256, (60, 70, 3), dtype=np.uint8))


def test_health_model_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    card = client.get("/v1/model").json()
    assert card["class_names"] == META["class_names"] and card["input_size"] == 48
    assert card["id"].startswith("patch_cnn_attention-") and "gradcam++" in card["explain_methods"]
    assert "attention" in card["explain_methods"] and card["limits"]["max_files"] == 4
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/predict", "/v1/explain", "/v1/model", "/healthz", "/readyz"} <= set(paths)


def test_predict_one_and_many(client: TestClient, png: bytes) -> None:
    r = client.post("/v1/predict", files=[("file", ("a.png", png, "image/png"))])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"]["id"].startswith("patch_cnn_attention") and body["task"] == "binary"
    (p,) = body["predictions"]
    assert p["file"] == "a.png" and (p["width"], p["height"]) == (70, 60)
    assert set(p["probabilities"]) == {"normal", "tumour"} and p["threshold"] == 0.5
    many = client.post("/v1/predict", files=[("file", (f"{i}.bin", png, "application/octet-stream")) for i in range(3)])
    assert many.status_code == 200 and len(many.json()["predictions"]) == 3
    assert many.json()["predictions"][0]["probabilities"] == pytest.approx(p["probabilities"], abs=1e-5)


@pytest.mark.parametrize("kind,status", [("random_bytes", 415), ("truncated_png", 422), ("png_bomb", 413),
                                         ("text_file", 415), ("empty_file", 422), ("oversized", 413)])
def test_malformed_uploads_are_4xx(client: TestClient, png: bytes, kind: str, status: int) -> None:
    name, data = malformed_uploads(png, LIMITS.max_upload_bytes)[kind]
    r = client.post("/v1/predict", files={"file": (name, data)})
    assert r.status_code == status, r.text
    assert r.json()["error"] and name in r.json()["detail"]


def test_request_errors(client: TestClient, png: bytes) -> None:
    assert client.post("/v1/predict").status_code == 422
    assert client.post("/v1/predict", data={"file": "/etc/passwd"}).status_code == 422  # no server paths
    too_many = client.post("/v1/predict", files=[("file", ("a.png", png))] * 5)
    assert too_many.status_code == 413 and "limit is 4" in too_many.json()["detail"]
    big = client.post("/v1/predict", content=b"x" * 10, headers={"content-length": str(LIMITS.max_body_bytes + 1),
                                                                "content-type": "multipart/form-data; boundary=x"})
    assert big.status_code == 413
    assert client.post("/v1/predict", content=b"garbage", headers={"content-type": "multipart/form-data"}).status_code < 500
    assert client.get("/v1/nothing").status_code == 404
    assert client.get("/v1/predict").status_code == 405


def test_explain_png_and_json(client: TestClient, png: bytes) -> None:
    from PIL import Image

    r = client.post("/v1/explain", files={"file": ("a.png", png)}, data={"method": "gradcam++", "target": "tumour"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-medattn-target"] == "tumour"
    im = Image.open(io.BytesIO(r.content))
    assert im.mode == "RGB" and max(im.size) >= 224
    j = client.post("/v1/explain", files={"file": ("a.png", png)}, data={"method": "attention", "format": "json"})
    assert j.status_code == 200 and j.json()["method"] == "attention"
    Image.open(io.BytesIO(base64.b64decode(j.json()["overlay_png_base64"]))).verify()
    for data, frag in (({"method": "nope"}, "valid for this bundle"), ({"target": "cat"}, "unknown target"),
                       ({"target": "7"}, "out of range"), ({"format": "gif"}, "png' or 'json")):
        bad = client.post("/v1/explain", files={"file": ("a.png", png)}, data=data)
        assert bad.status_code == 422 and frag in bad.json()["detail"], bad.text
    bomb = malformed_uploads(png, LIMITS.max_upload_bytes)["png_bomb"]
    assert client.post("/v1/explain", files={"file": bomb}).status_code == 413


def test_concurrent_requests_are_batched(client: TestClient, png: bytes) -> None:
    batcher = client.app.state.batcher
    b0, i0 = batcher.stats.batches, batcher.stats.items

    def one(_: int) -> int:
        return client.post("/v1/predict", files={"file": ("a.png", png)}).status_code

    with cf.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(one, range(24)))
    assert codes == [200] * 24
    assert batcher.stats.items - i0 == 24 and batcher.stats.batches - b0 < 24  # some shared a forward pass


def test_api_key(bundle: Path, png: bytes) -> None:
    from medattn.serve.api import create_app

    with TestClient(create_app(bundle, api_key=KEY, limits=LIMITS, ui=False)) as c:
        assert c.get("/healthz").status_code == 200
        for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": KEY + "x"}):
            r = c.post("/v1/predict", files={"file": ("a.png", png)}, headers=headers)
            assert r.status_code == 401 and r.json()["error"] == "unauthorized"
            assert c.get("/v1/model", headers=headers).status_code == 401
        ok = c.post("/v1/predict", files={"file": ("a.png", png)}, headers={"X-API-Key": KEY})
        assert ok.status_code == 200
        assert c.get("/v1/model", headers={"X-API-Key": KEY}).status_code == 200


def test_bad_bundle_is_a_clear_error(tmp_path: Path) -> None:
    from medattn.errors import BundleError
    from medattn.serve.api import create_app

    with pytest.raises(BundleError):
        create_app(tmp_path / "nope", ui=False)
