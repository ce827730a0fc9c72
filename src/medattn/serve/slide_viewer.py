"""A zoomable viewer of finished slide jobs: OpenSeadragon (shipped in ``static/``, offline) over
deep-zoom tiles of the slide (OpenSlide's :class:`~openslide.deepzoom.DeepZoomGenerator`) with the
job's heatmap as an overlay that can be toggled, and a legend marking the bundle threshold.

Routes (added with the slide jobs, :mod:`medattn.serve.slides`):

* ``GET /slides/viewer``: the page (lists jobs; ``#<job id>`` opens one). It holds no data: its
  requests carry the API key the user types, like the REST calls.
* ``GET /slides/static/{name}``: OpenSeadragon's script and licence.
* ``GET /v1/slides/{id}/slide.dzi`` and ``/v1/slides/{id}/slide_files/{level}/{col}_{row}.jpeg``:
  the deep-zoom pyramid of a finished job's slide.
* ``GET /v1/slides/{id}/heatmap.png``: the heatmap as RGBA (inferno, transparent where no tile),
  one pixel per tile.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from medattn.serve.limits import HTTPError

__all__ = ["viewer_router", "STATIC"]

STATIC = Path(__file__).parent / "static" / "openseadragon"
_STATIC_FILES = {"openseadragon.min.js": "text/javascript", "LICENSE.txt": "text/plain"}


class _RGBA:
    """A slide handle whose regions are RGBA (tiffslide returns RGB; the generator composites on alpha)."""

    def __init__(self, handle: Any) -> None:
        self._h = handle

    def __getattr__(self, name: str) -> Any:
        return getattr(self._h, name)

    def read_region(self, location: Any, level: int, size: Any) -> Any:
        return self._h.read_region(location, level, size).convert("RGBA")


class _Pyramids:
    """One deep-zoom generator per finished job, opened on first use."""

    def __init__(self, jobs: Any) -> None:
        self.jobs = jobs
        self._gens: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, job_id: str) -> Any:
        with self._lock:
            if job_id not in self._gens:
                from openslide.deepzoom import DeepZoomGenerator

                from medattn.infer.slide_io import open_slide

                job = self.jobs.status(job_id)
                if job["status"] != "done":
                    raise HTTPError(409, "not_ready", f"slide job {job_id} is {job['status']}")
                reader = open_slide(self.jobs.resolve(job["path"]))
                self._gens[job_id] = DeepZoomGenerator(_RGBA(reader.handle), tile_size=254, overlap=1)
            return self._gens[job_id]

    def tile(self, job_id: str, level: int, col: int, row: int) -> bytes:
        gen = self.get(job_id)
        if not 0 <= level < gen.level_count or not (0 <= col < gen.level_tiles[level][0]) \
                or not (0 <= row < gen.level_tiles[level][1]):
            raise HTTPError(404, "not_found", f"no deep-zoom tile {level}/{col}_{row}")
        buf = io.BytesIO()
        gen.get_tile(level, (col, row)).convert("RGB").save(buf, "JPEG", quality=85)
        return buf.getvalue()


def heatmap_png(out: Path) -> bytes:
    """The job's ``heatmap.npy`` as an RGBA PNG, one pixel per tile (transparent where NaN)."""
    import numpy as np
    from matplotlib import colormaps
    from PIL import Image

    grid = np.load(out / "heatmap.npy")
    rgba = (colormaps["inferno"](np.nan_to_num(np.clip(grid, 0, 1), nan=0.0)) * 255).astype(np.uint8)
    rgba[..., 3] = np.where(np.isfinite(grid), 255, 0)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    return buf.getvalue()


def _legend_stops(n: int = 9) -> str:
    import numpy as np
    from matplotlib import colormaps

    cols = colormaps["inferno"](np.linspace(0, 1, n))[:, :3] * 255
    return ", ".join(f"rgb({r:.0f},{g:.0f},{b:.0f}) {100 * i / (n - 1):.0f}%" for i, (r, g, b) in enumerate(cols))


def viewer_router(jobs: Any, dependencies: list[Any] | None = None) -> APIRouter:
    """The viewer's routes over ``jobs`` (a :class:`~medattn.serve.slides.SlideJobs`);
    ``dependencies`` guard the data routes (the API key)."""
    pyramids = _Pyramids(jobs)
    r = APIRouter(tags=["slides"])
    data = APIRouter(prefix="/v1/slides", tags=["slides"], dependencies=dependencies or [])

    @r.get("/slides/viewer", response_class=HTMLResponse, summary="Slide viewer (OpenSeadragon)")
    async def viewer() -> HTMLResponse:
        return HTMLResponse(_PAGE.replace("__STOPS__", _legend_stops()))

    @r.get("/slides/static/{name}", include_in_schema=False)
    async def static(name: str) -> FileResponse:
        if name not in _STATIC_FILES:
            raise HTTPError(404, "not_found", f"no static file '{name}'")
        return FileResponse(STATIC / name, media_type=_STATIC_FILES[name])

    @data.get("/{job_id}/slide.dzi", summary="Deep-zoom descriptor of a finished job's slide")
    async def dzi(job_id: str) -> Response:
        gen = await run_in_threadpool(pyramids.get, job_id)
        return Response(gen.get_dzi("jpeg"), media_type="application/xml")

    @data.get("/{job_id}/slide_files/{level}/{tile}", summary="A deep-zoom tile (JPEG)")
    async def dzi_tile(job_id: str, level: int, tile: str) -> Response:
        try:
            col, row = (int(v) for v in tile.removesuffix(".jpeg").split("_"))
        except ValueError:
            raise HTTPError(404, "not_found", f"no deep-zoom tile '{tile}' (COL_ROW.jpeg)") from None
        body = await run_in_threadpool(pyramids.tile, job_id, level, col, row)
        return Response(body, media_type="image/jpeg")

    @data.get("/{job_id}/heatmap.png", summary="The heatmap as RGBA, one pixel per tile")
    async def heatmap(job_id: str) -> Response:
        summary = await run_in_threadpool(jobs.file, job_id, "summary.json")
        return Response(await run_in_threadpool(heatmap_png, summary.parent), media_type="image/png")

    r.include_router(data)
    return r


_PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>medattn · slides</title>
<script src="/slides/static/openseadragon.min.js"></script>
<style>
 body{font-family:system-ui,sans-serif;margin:0;display:flex;height:100vh}
 #side{width:300px;padding:10px;border-right:1px solid #ccc;overflow:auto;font-size:14px}
 #main{flex:1;position:relative} #osd{position:absolute;inset:0;background:#f4f4f4}
 #jobs li{cursor:pointer;margin:4px 0} #jobs li.sel{font-weight:bold}
 #legend{position:absolute;right:12px;bottom:12px;background:rgba(255,255,255,.92);padding:8px 10px;
   border:1px solid #999;font-size:12px;z-index:10;display:none}
 #bar{position:relative;width:220px;height:14px;background:linear-gradient(to right, __STOPS__)}
 #tick{position:absolute;top:-4px;width:3px;height:22px;background:#00c8ff}
 #ticks{display:flex;justify-content:space-between;width:220px}
 .heat{image-rendering:pixelated;opacity:.6;pointer-events:none}
</style></head>
<body><div id="side"><h3>Slide jobs</h3>
<label>API key <input id="key" type="password" size="14"></label> <button id="reload">list</button>
<ul id="jobs"></ul><div id="info"></div>
<label><input type="checkbox" id="toggle" checked> heatmap overlay</label></div>
<div id="main"><div id="osd"></div>
<div id="legend"><div id="title"></div><div id="bar"><div id="tick"></div></div>
<div id="ticks"><span>0</span><span>0.5</span><span>1</span></div><div id="thr"></div></div></div>
<script>
const $ = (id) => document.getElementById(id);
$("key").value = sessionStorage.getItem("medattn-key") || "";
const hdr = () => { const k = $("key").value; sessionStorage.setItem("medattn-key", k); return k ? {"X-API-Key": k} : {}; };
let viewer = null, heat = null;
async function api(path) { const r = await fetch(path, {headers: hdr()}); if (!r.ok) throw new Error((await r.json()).detail); return r; }
async function list() {
  try {
    const jobs = (await (await api("/v1/slides")).json()).jobs, items = [];
    for (const j of jobs) { const li = document.createElement("li"); li.id = "job-" + j.id;
      li.textContent = j.path + " — " + j.status; if (j.status === "done") li.onclick = () => show(j.id); items.push(li); }
    $("jobs").replaceChildren(...items);  // whole: two listings at once never duplicate a job
    const want = location.hash.slice(1); if (want && jobs.some(j => j.id === want)) show(want);
  } catch (e) { $("info").textContent = "cannot list jobs: " + e.message; }
}
async function show(id) {
  location.hash = id;
  document.querySelectorAll("#jobs li").forEach(li => li.classList.toggle("sel", li.id === "job-" + id));
  const job = await (await api("/v1/slides/" + id)).json(), s = job.summary;
  const thr = s.threshold, W = s.dimensions[0];
  $("info").innerHTML = `<p><b>${job.path}</b><br>${s.tiles_predicted} tiles, ${(100 * s.positive_fraction).toFixed(1)}% at or over ${thr}<br>max ${s.max_probability === null ? "–" : s.max_probability.toFixed(3)}</p>`;
  $("title").textContent = "tile score, " + s.tile_um.toFixed(0) + " µm tiles";
  $("tick").style.left = (100 * thr) + "%";
  $("thr").textContent = "threshold " + thr + " (cyan)";
  $("legend").style.display = "block";
  const blob = await (await api("/v1/slides/" + id + "/heatmap.png")).blob();  // before the viewer opens
  if (viewer) viewer.destroy();
  viewer = OpenSeadragon({id: "osd", tileSources: "/v1/slides/" + id + "/slide.dzi", showNavigationControl: false,
    loadTilesWithAjax: true, ajaxHeaders: hdr(), maxZoomPixelRatio: 4});
  heat = document.createElement("img"); heat.className = "heat"; heat.id = "heatmap-overlay"; heat.src = URL.createObjectURL(blob);
  heat.style.display = $("toggle").checked ? "block" : "none";
  const [ox, oy] = s.region_origin, [rows, cols] = s.grid, t = s.tile_level0_px;
  viewer.addHandler("open", () => viewer.addOverlay({element: heat,
    location: new OpenSeadragon.Rect(ox / W, oy / W, cols * t / W, rows * t / W)}));
}
$("toggle").onchange = () => { if (heat) heat.style.display = $("toggle").checked ? "block" : "none"; };
$("reload").onclick = list;
list();
</script></body></html>
"""
