"""The dashboard in headless Chromium shows the model card, the synthetic-data banner, the input
warnings, the conformal set and colour bars on the heatmaps (issue 17 done-when); on a binary
bundle the decision is stated once with its threshold and its rule, and a tiled input shows its
tile heatmap (issue 22.6)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from tests._server import CHROMIUM, served
from tests._server import CHROMIUM_ARGS as ARGS

SHOT = Path(os.environ.get("MEDATTN_SCREENSHOT_DIR", "/tmp")) / "medattn_dash_binary.png"


@pytest.fixture(scope="module")
def server(smoke_pcam_run: Path):
    pytest.importorskip("gradio")
    from medattn.serve.api import create_app

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    with served(create_app(smoke_pcam_run / "bundle")) as base:
        yield base


def test_colorbar_is_appended() -> None:
    from medattn.serve.views import with_colorbar

    out = with_colorbar(np.zeros((100, 120, 3), np.uint8))
    assert out.shape[0] == 100 and out.shape[1] > 120 + 14
    bar = out[:, 126:140]
    assert bar[2, 5, 0] > 100 and bar[-3, 5, 2] > 100  # jet: red at the top (high), blue at the bottom


@pytest.mark.browser
def test_dashboard_shows_card_banner_warning_set_and_colorbar(server: str, tmp_path: Path, smoke_pcam_run: Path,
                                                              tissue_1000: np.ndarray) -> None:
    if not CHROMIUM.exists():
        pytest.skip("headless Chromium is not installed (/usr/bin/chromium); apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    from PIL import Image

    img = tmp_path / "tissue_1000.png"
    Image.fromarray(tissue_1000).save(img)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1500})
            page.set_default_timeout(90_000)
            page.goto(server + "/")
            assert "Research use only" in page.locator("#title").inner_text()
            assert "SYNTHETIC" in page.locator("#synthetic-banner").inner_text()
            assert page.locator("#no-samples").count() == 0  # trained on synthetic data: synthetic samples
            page.locator("#model-card").get_by_text("Model card").first.click()
            page.locator("#model-card-text").get_by_text("Limitations").first.wait_for()
            page.locator("#input-image input[type=file]").set_input_files(str(img))
            page.locator("#input-image img").first.wait_for()
            page.locator("#analyse").click()
            decision = page.locator("#decision")
            decision.get_by_text("threshold").wait_for()
            meta = json.loads((smoke_pcam_run / "bundle" / "bundle.json").read_text())
            neg, pos = meta["class_names"]
            line = decision.inner_text().strip()
            # one decision: the label, the probability of the positive class, the threshold and its rule
            m = re.fullmatch(rf"({neg}|{pos}) — probability (?:of {pos} )?(0\.\d+) \(its likeliest of 441 tiles\) "
                             r"(≥|<) threshold (0\.\d+) \(chosen on validation for Youden's J\)", line)
            assert m, line
            assert abs(float(m.group(4)) - meta["threshold"]) < 1e-2
            assert (m.group(1) == pos) == (m.group(3) == "≥") == (float(m.group(2)) >= meta["threshold"])
            # ... stated once: no second "top prediction" anywhere on the page
            assert page.get_by_text(re.compile(r"(≥|<) threshold")).count() == 1
            assert page.locator("#top-label").count() == 0
            assert "Top prediction" not in page.locator("body").inner_text()
            trust = page.locator("#trust")
            trust.get_by_text("Prediction sets of the tiles").wait_for()
            text = trust.inner_text()  # tiled at its own scale, as `medattn predict` and REST do
            assert "Tiled" in text and "1000×1000" in text and "never shrunk" in text
            page.locator("#tile-heatmap").scroll_into_view_if_needed()  # images load lazily
            tiles = page.locator("#tile-heatmap img").first
            tiles.wait_for()
            assert tiles.evaluate("e => e.naturalWidth") > 300  # the tile grid painted over the image
            page.locator("#overlay-cam").scroll_into_view_if_needed()  # images load lazily
            overlay = page.locator("#overlay-cam img").first
            overlay.wait_for()
            w, h = overlay.evaluate("e => [e.naturalWidth, e.naturalHeight]")
            assert w > h  # square image + colour bar on its right
            assert "class activation map" in page.locator("#caption-cam").inner_text()
            # the warnings sit above the probability bars
            assert trust.bounding_box()["y"] < page.locator("#chart").bounding_box()["y"]
            # a tiled input is prepared without a resize, and the panel says so
            prep = page.locator("#prep-metrics")
            prep.get_by_text("PSNR vs input").wait_for()
            assert "without a resize" in prep.inner_text() and "resized to" not in prep.inner_text()
            assert "likeliest tile" in prep.inner_text() and "48×48" in prep.inner_text()  # one tile, as seen
            assert page.locator("#cam-gallery").is_hidden()  # per-class maps: multi-class bundles only
            page.screenshot(path=str(SHOT), full_page=True)
        finally:
            browser.close()
