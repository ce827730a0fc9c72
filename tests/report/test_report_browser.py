"""A report with every section opens in headless Chromium, shows each section and loads offline."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]
SECTIONS = {
    "data": "Data and audit",
    "training": "Training curves",
    "metrics": "Test metrics with 95% CIs",
    "per-class": "Per-class metrics",
    "comparison": "Attention vs baseline (paired)",
    "curves": "ROC and precision-recall",
    "calibration": "Calibration",
    "confusion": "Confusion matrix",
    "segmentation": "Segmentation overlays",
    "explanations": "Explanation gallery",
    "reproducibility": "Reproducibility",
}

pytestmark = pytest.mark.browser


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _build_report(out: Path) -> Path:
    from medattn.metrics import binary_confusion
    from medattn.metrics.compare import paired_bootstrap
    from medattn.metrics.multiclass import multiclass_per_class
    from medattn.metrics.summary import binary_summary
    from medattn.report.eval_plots import save_pr_curve, save_reliability, save_seg_overlay
    from medattn.report.html import Report, img_tag, table_html
    from medattn.report.plots import save_confusion_matrix, save_history, save_roc
    from medattn.report.sections import comparison_table, metrics_ci_table, per_class_table

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 120)
    pa = np.clip(0.5 + (y - 0.5) * 0.4 + rng.normal(0, 0.2, 120), 0, 1)
    pb = np.clip(0.5 + (y - 0.5) * 0.7 + rng.normal(0, 0.15, 120), 0, 1)
    from medattn.metrics import binary_metrics

    rep = Report("medattn report: browser check")
    rep.add("data", SECTIONS["data"], table_html(["split", "items", "patients"], [["test", 120, 30]])
            + "<p class=note>audit: 0 duplicate images across splits</p>")
    hist = [{"epoch": e, "train_loss": 1 / (e + 1), "val_loss": 1.2 / (e + 1), "val_auroc": 0.7 + 0.05 * e}
            for e in range(4)]
    rep.add("training", SECTIONS["training"], img_tag(save_history(hist, out / "history.png"), "training curves"))
    rep.add("metrics", SECTIONS["metrics"], metrics_ci_table(binary_summary(y, pb, 0.5, n_boot=50)))
    pc = rng.dirichlet(np.ones(3), 120)
    rep.add("per-class", SECTIONS["per-class"],
            per_class_table(multiclass_per_class(rng.integers(0, 3, 120), pc, ["a", "b", "c"])))
    cmp = paired_bootstrap(lambda i: binary_metrics(y[i], pa[i]), lambda i: binary_metrics(y[i], pb[i]), 120,
                           n_boot=50)
    rep.add("comparison", SECTIONS["comparison"], comparison_table({"alpha": 0.05, "metrics": cmp}))
    rep.add("curves", SECTIONS["curves"],
            img_tag(save_roc({"A": (y, pa), "B": (y, pb)}, out / "roc.png"), "ROC")
            + img_tag(save_pr_curve({"A": (y, pa), "B": (y, pb)}, out / "pr.png"), "PR"))
    rep.add("calibration", SECTIONS["calibration"],
            img_tag(save_reliability({"A": (y, pa), "B": (y, pb)}, out / "cal.png"), "reliability"))
    rep.add("confusion", SECTIONS["confusion"],
            img_tag(save_confusion_matrix(binary_confusion(y, pb, 0.5), ["normal", "tumour"], out / "cm.png"), "cm"))
    true = np.zeros((64, 64), np.uint16)
    true[10:30, 10:30], true[40:55, 35:60] = 1, 2
    pred = np.roll(true, 3, axis=1)
    rep.add("segmentation", SECTIONS["segmentation"],
            img_tag(save_seg_overlay(rng.random((64, 64, 3)), true, pred, out / "seg.png", "img1"), "overlay"))
    gal = "".join(img_tag(_png((rng.random((48, 48, 3)) * 255).astype(np.uint8)), f"cam {k}", 96) for k in range(4))
    rep.add("explanations", SECTIONS["explanations"], f"<div class=gallery>{gal}</div>")
    rep.add("reproducibility", SECTIONS["reproducibility"],
            "<pre>" + json.dumps({"recipe": "pcam-attention", "seed": 0, "split_sha256": "ab12"}, indent=2) + "</pre>")
    return rep.write(out / "report.html")


def test_report_opens_in_headless_chromium(tmp_path: Path) -> None:
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is absent (apt-get install -y chromium); the browser test needs it")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    page_path = _build_report(tmp_path)
    requests: list[str] = []
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_path.as_uri(), wait_until="load")
            for sid, heading in SECTIONS.items():
                loc = page.locator(f"section#{sid} h2")
                assert loc.inner_text().strip() == heading
                page.locator(f"section#{sid}").scroll_into_view_if_needed()
                assert page.locator(f"section#{sid}").is_visible(), sid
            broken = page.evaluate("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
                                   ".map(i => i.alt)")
            n_img = page.evaluate("document.images.length")
            toc = page.evaluate("Array.from(document.querySelectorAll('ul a')).map(a => a.getAttribute('href'))")
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert broken == [] and n_img >= 10
    assert toc == [f"#{s}" for s in SECTIONS]
    assert errors == []
    assert all(u.startswith(("file:", "data:")) for u in requests), requests  # self-contained
    with Image.open(shot) as im:
        assert im.size[0] >= 1000 and im.size[1] > 2000  # the whole page, not a blank viewport
        colours = np.asarray(im.convert("RGB").resize((64, 256))).reshape(-1, 3)
        assert len(np.unique(colours, axis=0)) > 50  # figures rendered, not an empty page
