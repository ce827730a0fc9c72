"""The dashboard of a multi-class cytology bundle (denoising + CLAHE on) in headless Chromium: the
preparation panel shows every step with PSNR/SSIM against the input, and Grad-CAM++ has one map
per class (issue 23.7); the decision is the arg-max, the abnormal view has its threshold (22.6)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests._server import CHROMIUM, served
from tests._server import CHROMIUM_ARGS as ARGS

SHOT = Path(os.environ.get("MEDATTN_SCREENSHOT_DIR", "/tmp")) / "medattn_dash_multiclass.png"


@pytest.fixture(scope="module")
def herlev_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One smoke ``herlev-cpu`` run with the cytology enhancement on (7 classes, 48 px input)."""
    from medattn.engine.runner import train_run

    out = tmp_path_factory.mktemp("dash") / "herlev"
    train_run("herlev-cpu", out=out, smoke=True, overrides=["data.denoise=true", "data.clahe=true",
                                                            "data.image_size=48", "evaluation.tta=false"])
    return out


@pytest.fixture(scope="module")
def server(herlev_run: Path):
    pytest.importorskip("gradio")
    from medattn.serve.api import create_app

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    with served(create_app(herlev_run / "bundle")) as base:
        yield base


def test_bundle_carries_the_cytology_enhancement(herlev_run: Path) -> None:
    meta = json.loads((herlev_run / "bundle" / "bundle.json").read_text())
    assert meta["preparation"]["denoise"] and meta["preparation"]["clahe"]
    assert meta["preparation"]["order"][:3] == ["denoise", "clahe", "resize"]


@pytest.mark.browser
def test_multiclass_dashboard_shows_preparation_and_a_map_per_class(server: str, herlev_run: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("headless Chromium is not installed (/usr/bin/chromium); apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    import pandas as pd

    meta = json.loads((herlev_run / "bundle" / "bundle.json").read_text())
    names = meta["class_names"]
    split = pd.read_csv(herlev_run / "split.csv")
    cell = next((herlev_run / "smoke_data").rglob(split[split["split"] == "test"]["file"].iloc[0]))
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1500})
            page.set_default_timeout(90_000)
            page.goto(server + "/")
            page.locator("#input-image input[type=file]").set_input_files(str(cell))
            page.locator("#input-image img").first.wait_for()
            page.locator("#analyse").click()
            decision = page.locator("#decision")
            decision.get_by_text("the likeliest of 7 classes").wait_for()
            text = decision.inner_text()
            assert re.match(rf"({'|'.join(names)}) — the likeliest of 7 classes, probability 0\.\d\d", text), text
            assert re.search(r"abnormal \(carcinoma_in_situ, light_dysplastic, moderate_dysplastic, "
                             r"severe_dysplastic\): (yes|no) — their summed probability 0\.\d+ (≥|<) threshold "
                             r"0\.\d+ \(chosen on validation for Youden's J\)", text), text
            # the preparation panel: each deterministic step with PSNR/SSIM/RMS contrast against the input
            prep = page.locator("#prep-metrics")
            prep.get_by_text("PSNR vs input").wait_for()
            rows = {r.split("\t")[0].strip(): r.split("\t")[1:] for r in prep.locator("tr").all_inner_texts()}
            assert list(rows)[1:] == ["input", "denoised + CLAHE", "resized to 48×48"], rows
            assert rows["input"][1:3] == ["∞", "1.000"]
            for step in ("denoised + CLAHE", "resized to 48×48"):
                psnr, ssim, rms = (float(v) for v in rows[step][1:4])
                assert 5 < psnr < 80 and 0 < ssim < 1 and 0 < rms < 1
            assert "at the input's size" in prep.inner_text()
            page.locator("#prep-steps").scroll_into_view_if_needed()  # images load lazily
            steps = page.locator("#prep-steps img")
            steps.nth(2).wait_for()
            assert steps.count() == 3
            assert "SSIM" in page.locator("#prep-steps").inner_text()
            # per-class Grad-CAM++: one map per class, each captioned with its class
            page.locator("#cam-gallery").scroll_into_view_if_needed()  # images load lazily
            gallery = page.locator("#cam-gallery")
            gallery.locator("img").nth(len(names) - 1).wait_for()
            assert gallery.locator("img").count() == len(names)
            caps = gallery.inner_text()
            assert all(f"{n} · p = " in caps for n in names), caps
            page.locator("#overlay-cam").scroll_into_view_if_needed()  # images load lazily
            page.locator("#overlay-cam img").first.wait_for()
            page.screenshot(path=str(SHOT), full_page=True)
        finally:
            browser.close()
