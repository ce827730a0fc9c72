"""REST slide jobs: a slide under the root end to end, path escapes refused, a full queue, and
jobs that survive a restart."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from medattn.infer.testslides import synthetic_slide  # noqa: E402
from tests.infer.conftest import save_tiny_bundle  # noqa: E402

KEY = "slide-key"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("slidejobs")
    bundle = save_tiny_bundle(base / "bundle", gain=2000.0)
    root, outside = base / "root", base / "outside"
    (root / "cohort").mkdir(parents=True)
    outside.mkdir()
    synthetic_slide(root / "cohort" / "a.svs", grid=(3, 4), seed=1, mpp=1.0)
    synthetic_slide(outside / "secret.svs", grid=(1, 2), seed=2, mpp=1.0)
    (root / "cohort" / "notes.txt").write_text("not a slide")
    os.symlink(outside / "secret.svs", root / "link.svs")
    os.symlink(outside, root / "linkdir")
    os.symlink(root / "cohort" / "a.svs", root / "inside-link.svs")  # a symlink inside the root is fine
    return {"bundle": bundle, "root": root, "base": base}


def _app(setup: dict[str, Path], out: Path, **jobs: object):
    from medattn.serve.api import create_app

    return create_app(setup["bundle"], api_key=KEY, ui=False,
                      slide_jobs={"slide_root": setup["root"], "out_root": out, **jobs})


def _wait(c: TestClient, job_id: str, timeout: float = 60.0) -> dict:
    t0 = time.time()
    while time.time() - t0 < timeout:
        body = c.get(f"/v1/slides/{job_id}", headers={"X-API-Key": KEY}).json()
        if body["status"] in ("done", "failed"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"slide job {job_id} did not finish in {timeout} s")


def test_slide_job_end_to_end_and_path_escapes(setup: dict[str, Path], tmp_path: Path) -> None:
    h = {"X-API-Key": KEY}
    with TestClient(_app(setup, tmp_path / "jobs")) as c:
        assert c.post("/v1/slides", json={"path": "cohort/a.svs"}).status_code == 401
        r = c.post("/v1/slides", json={"path": "cohort/a.svs"}, headers=h)
        assert r.status_code == 202 and r.json()["status"] in ("queued", "running")
        job = _wait(c, r.json()["id"])
        assert job["status"] == "done" and job["error"] is None and job["progress"]["fraction"] == 1.0
        assert job["summary"]["tiles_predicted"] > 0 and job["summary"]["dimensions"] == [576, 480]
        assert {"heatmap.tif", "overlay.png", "slide.geojson", "summary.json", "tiles.csv"} <= set(job["files"])
        base = f"/v1/slides/{job['id']}/files"
        assert c.get(f"{base}/overlay", headers=h).content[:8] == b"\x89PNG\r\n\x1a\n"
        assert c.get(f"{base}/heatmap", headers=h).content[:4] == b"II*\x00"
        geo = c.get(f"{base}/geojson", headers=h)
        assert geo.headers["content-type"].startswith("application/geo+json")
        assert json.loads(geo.content)["type"] == "FeatureCollection"
        assert c.get(f"{base}/summary", headers=h).json()["tiles_predicted"] == job["summary"]["tiles_predicted"]
        assert [j["id"] for j in c.get("/v1/slides", headers=h).json()["jobs"]] == [job["id"]]
        # the outputs live in the job's folder, written as medattn slide writes them
        assert (tmp_path / "jobs" / job["id"] / "slide" / "tiles.csv").is_file()
        assert c.post("/v1/slides", json={"path": "inside-link.svs"}, headers=h).status_code == 202

        refused = {
            "../outside/secret.svs": (400, "invalid_path"), "cohort/../../outside/secret.svs": (400, "invalid_path"),
            str(setup["root"] / "cohort" / "a.svs"): (400, "invalid_path"), "/etc/passwd": (400, "invalid_path"),
            "C:\\slides\\a.svs": (400, "invalid_path"), "": (400, "invalid_path"),
            "link.svs": (403, "outside_root"), "linkdir/secret.svs": (403, "outside_root"),
            "cohort/missing.svs": (404, "not_found"), "cohort": (422, "invalid_path"),
            "cohort/notes.txt": (415, "unsupported_format"),
        }
        for path, (code, err) in refused.items():
            r = c.post("/v1/slides", json={"path": path}, headers=h)
            assert (r.status_code, r.json()["error"]) == (code, err), path
            assert set(r.json()) == {"error", "detail"} and r.json()["detail"]
        assert c.post("/v1/slides", json={}, headers=h).json()["error"] == "invalid_request"
        assert c.get("/v1/slides/0123", headers=h).status_code == 404
        assert c.get(f"{base}/model.safetensors", headers=h).json()["error"] == "not_found"
        c.app.state.slide_jobs.stop()


def test_full_queue_is_503_and_jobs_survive_a_restart(setup: dict[str, Path], tmp_path: Path) -> None:
    h = {"X-API-Key": KEY}
    out = tmp_path / "jobs"
    with TestClient(_app(setup, out, max_queue=2, autostart=False)) as c:  # a worker that has not started
        ids = [c.post("/v1/slides", json={"path": "cohort/a.svs"}, headers=h).json()["id"] for _ in range(2)]
        r = c.post("/v1/slides", json={"path": "cohort/a.svs"}, headers=h)
        assert r.status_code == 503 and r.json()["error"] == "busy"
        first = c.get(f"/v1/slides/{ids[1]}", headers=h).json()
        assert first["status"] == "queued" and first["queue_position"] == 2
        assert c.get(f"/v1/slides/{ids[0]}/files/overlay", headers=h).status_code == 409
    # the first job was running when the server died, with part of its tiles written
    job0 = json.loads((out / ids[0] / "job.json").read_text())
    (out / ids[0] / "job.json").write_text(json.dumps({**job0, "status": "running"}))
    partial = out / ids[0] / ".partial" / "slide"
    partial.mkdir(parents=True)
    (partial / "tiles.csv").write_text("tile,row,col,x,y,size,tissue,score,prob_tumour,extra\n"
                                       "1_1,1,1,64,64,64,1,0.25,0.25,\n")
    with TestClient(_app(setup, out)) as c:  # restart: both jobs queued again, the first resumes
        done = [_wait(c, i) for i in ids]
        assert [d["status"] for d in done] == ["done", "done"]
        assert done[0]["summary"]["tiles_new_this_run"] == done[0]["summary"]["tiles_predicted"] - 1
        assert done[1]["summary"]["tiles_new_this_run"] == done[1]["summary"]["tiles_predicted"]
        tiles = c.get(f"/v1/slides/{ids[0]}/files/tiles", headers=h).text.splitlines()
        assert "1_1,1,1,64,64,64,1,0.25,0.25," in tiles  # the row written before the restart is kept
        c.app.state.slide_jobs.stop()


@pytest.mark.browser
def test_slide_viewer_shows_the_heatmap_over_the_slide(setup: dict[str, Path], tmp_path: Path) -> None:
    """The viewer in headless Chromium: deep-zoom slide, heatmap overlay that toggles, legend with
    the threshold; the screenshot is kept in the test's folder."""
    from tests._server import CHROMIUM, CHROMIUM_ARGS, served

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    import httpx
    import numpy as np
    from PIL import Image

    app = _app(setup, tmp_path / "jobs")
    with served(app) as url:
        h = {"X-API-Key": KEY}
        job_id = httpx.post(f"{url}/v1/slides", json={"path": "cohort/a.svs"}, headers=h).json()["id"]
        t0 = time.time()
        while httpx.get(f"{url}/v1/slides/{job_id}", headers=h).json()["status"] != "done":
            assert time.time() - t0 < 60
            time.sleep(0.2)
        assert httpx.get(f"{url}/v1/slides/{job_id}/slide.dzi").status_code == 401
        assert "<Size Width=\"576\" Height=\"480\"" in httpx.get(f"{url}/v1/slides/{job_id}/slide.dzi", headers=h).text
        assert httpx.get(f"{url}/v1/slides/{job_id}/slide_files/99/0_0.jpeg", headers=h).status_code == 404
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1100, "height": 700})
                page.goto(f"{url}/slides/viewer")
                page.fill("#key", KEY)
                page.click("#reload")
                page.click(f"#job-{job_id}")
                page.wait_for_selector("#heatmap-overlay", state="visible", timeout=60000)
                page.wait_for_function("() => document.querySelector('#osd canvas') !== null && "
                                       "viewer.world.getItemAt(0) && viewer.world.getItemAt(0).getFullyLoaded()",
                                       timeout=60000)  # generous: a loaded 2-core machine
                page.wait_for_timeout(500)
                assert "threshold 0.5" in page.inner_text("#legend")
                box = page.locator("#heatmap-overlay").bounding_box()
                assert box and box["width"] > 100 and box["height"] > 100
                on = tmp_path / "viewer.png"
                page.screenshot(path=str(on))
                page.click("#toggle")
                page.wait_for_timeout(300)
                page.screenshot(path=str(tmp_path / "viewer_off.png"))
            finally:
                browser.close()
    a = np.asarray(Image.open(on).convert("RGB"), float)
    b = np.asarray(Image.open(tmp_path / "viewer_off.png").convert("RGB"), float)
    x0, y0 = int(box["x"]), int(box["y"])
    region = (slice(y0 + 5, y0 + int(box["height"]) - 5), slice(x0 + 5, x0 + int(box["width"]) - 5))
    assert np.abs(a[region] - b[region]).mean() > 10  # the overlay changes the picture where it lies
    assert np.abs(a[:, :250] - b[:, :250]).mean() < 1  # and nothing in the side panel
