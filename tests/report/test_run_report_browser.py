"""The report of a real (smoke) run in headless Chromium: screenshot plus DOM checks of the layout
fixes (provenance with the run's path, no "None – None", no float counts, named figures)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_smoke_run_report_in_chromium(tmp_path: Path) -> None:
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is absent (apt-get install -y chromium); the browser test needs it")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    from medattn.engine.runner import train_run

    run = tmp_path / "pcam-attention"
    train_run("pcam-attention", out=run, smoke=True)
    page_path = run / "report.html"
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(page_path.as_uri(), wait_until="load")
            text = page.inner_text("body")
            prov = page.inner_text("#provenance")
            generated = page.inner_text("p.generated")
            tables = page.evaluate("Array.from(document.querySelectorAll('table')).map(t => t.innerText)")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert "None – None" not in text and "None" not in "".join(tables)
    assert str(run.resolve()) in prov and "medattn" in prov and "command" in prov
    assert re.match(r"generated \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC by medattn ", generated)
    assert "medattn run: pcam-attention" in text
    assert not re.search(r"support\s+\d+\.\d{3}", "".join(tables))
    assert (tmp_path / "report.png").stat().st_size > 50_000
