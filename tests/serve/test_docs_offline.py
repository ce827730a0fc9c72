"""``/docs`` and ``/redoc`` use local assets (no CDN) and render the operations offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests._server import CHROMIUM, served
from tests._server import CHROMIUM_ARGS as ARGS

pytest.importorskip("fastapi")
pytest.importorskip("fastapi_offline", reason="the serve extra's fastapi-offline is not installed")
from fastapi.testclient import TestClient  # noqa: E402

META = {"task": "binary", "class_names": ["normal", "tumour"], "input_size": 32, "in_chans": 3,
        "mean": [0.5] * 3, "std": [0.25] * 3, "threshold": 0.5}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    from medattn.bundle import save_bundle
    from medattn.models import create_model
    from medattn.serve.api import create_app

    torch.manual_seed(0)
    b = save_bundle(create_model("patch_cnn_baseline", width=0.125), META, tmp_path_factory.mktemp("docs") / "b")
    return create_app(b, ui=False, max_wait_ms=5)


def test_docs_pages_reference_only_local_assets(app) -> None:  # noqa: ANN001
    with TestClient(app) as c:
        for page, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
            html = c.get(page).text
            assert f'src="/docs-assets/{asset}"' in html and "cdn" not in html.lower(), page
            js = c.get(f"/docs-assets/{asset}")
            assert js.status_code == 200 and len(js.content) > 100_000
        assert c.get("/docs-assets/swagger-ui.css").status_code == 200
        assert "/docs" not in c.get("/openapi.json").json()["paths"]


@pytest.mark.browser
def test_docs_render_operations_offline_in_chromium(app, tmp_path: Path) -> None:  # noqa: ANN001
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is absent (apt-get install -y chromium); the browser test needs it")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    outside: list[str] = []
    with served(app) as base:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 900})

                def route(r) -> None:  # noqa: ANN001 - offline: anything not on this server fails
                    if r.request.url.startswith(base):
                        r.continue_()
                    else:
                        outside.append(r.request.url)
                        r.abort()

                page.route("**/*", route)
                page.goto(f"{base}/docs", wait_until="load")
                page.wait_for_selector(".opblock", timeout=30_000)
                ops = page.locator(".opblock-summary-path").all_inner_texts()
                page.screenshot(path=str(tmp_path / "docs.png"), full_page=True)
                swagger_outside = list(outside)
                page.goto(f"{base}/redoc", wait_until="load")
                try:
                    page.wait_for_function("document.querySelectorAll('[data-section-id]').length > 3",
                                           timeout=30_000)
                finally:
                    page.screenshot(path=str(tmp_path / "redoc.png"), full_page=False)
                redoc_text = page.inner_text("body")
            finally:
                browser.close()
    paths = {o.replace("\u200b", "").strip() for o in ops}
    assert {"/v1/predict", "/v1/explain", "/v1/model", "/healthz"} <= paths, paths
    assert "Predict one or several images" in redoc_text and "/v1/explain" in redoc_text
    assert swagger_outside == []
    # ReDoc's only outside request is its footer logo ("API docs by Redocly"), blocked here
    assert all(u.endswith("logo-mini.svg") for u in outside), outside
