"""Slide jobs over REST: ``POST /v1/slides`` runs ``medattn slide`` on a slide under a configured
root, ``GET /v1/slides/{id}`` reports its status and progress, and its outputs are downloaded
from ``GET /v1/slides/{id}/files/{name}``.

* Only files under the slide root are accepted: a relative path, no ``..``, and a target that
  stays inside the root once symlinks are resolved (checked again when the job starts). Every
  refusal is a 4xx JSON ``{"error", "detail"}``.
* Jobs live in folders under the output root: ``<out>/<id>/job.json`` (status, path, times,
  error) and ``<out>/<id>/slide/`` (the slide's outputs, renamed there when complete by the
  cohort's :func:`~medattn.infer.cohort.run_one`, the same path as ``medattn slide``).
* A zoomable viewer of finished jobs at ``/slides/viewer`` (:mod:`medattn.serve.slide_viewer`).
* One worker thread runs jobs in submission order; at most ``max_queue`` wait (503 when full).
  On a restart, queued jobs and the one that was running are queued again; the running one
  resumes from its partial ``tiles.csv``.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import deque
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from medattn.io import atomic_write_json, ensure_dir
from medattn.serve.limits import HTTPError

__all__ = ["SlideJobs", "slide_router", "FILES"]

FILES = {"heatmap.tif": "image/tiff", "heatmap.npy": "application/octet-stream", "overlay.png": "image/png",
         "slide.geojson": "application/geo+json", "summary.json": "application/json", "tiles.csv": "text/csv",
         "cam.png": "image/png", "nuclei.geojson": "application/geo+json", "nuclei.csv": "text/csv"}
"""Result files a client may download (those the slide wrote)."""
ALIASES = {"heatmap": "heatmap.tif", "overlay": "overlay.png", "geojson": "slide.geojson", "summary": "summary.json",
           "tiles": "tiles.csv"}
_ID = re.compile(r"[0-9a-f]{32}")
_SLIDE = "slide"


class _Stopped(BaseException):
    """Raised inside a running job when the server stops (the job resumes on the next start)."""


class SlideJobs:
    """The slide job queue of a server: submission, status, result files, restart.

    Args:
        predictor: the served bundle (classifier or nuclei segmenter).
        slide_root: the only folder slides are read from.
        out_root: job folders.
        max_queue: most jobs waiting to run; more are refused with 503.
        slide_options: keyword arguments of :class:`~medattn.infer.slide.SlideOptions`
            (default: regions read in the job thread, ``workers=0``).
        autostart: start the worker thread now (tests pass ``False`` to keep jobs queued).
    """

    def __init__(self, predictor: Any, slide_root: str | Path, out_root: str | Path, *, max_queue: int = 8,
                 slide_options: dict[str, Any] | None = None, autostart: bool = True) -> None:
        from medattn.errors import ConfigError

        self.root = Path(slide_root).resolve()
        if not self.root.is_dir():
            raise ConfigError(f"--slide-root '{slide_root}' is not a folder")
        if max_queue < 1:
            raise ConfigError(f"the slide job queue needs room for at least one job, got {max_queue}")
        self.out = ensure_dir(out_root).resolve()
        self.predictor, self.max_queue = predictor, max_queue
        self.slide_kw = {"workers": 0, **(slide_options or {})}
        self._queue: deque[str] = deque()
        self._cv = threading.Condition()
        self._progress: dict[str, tuple[int, int]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        for job in sorted(self._jobs_on_disk(), key=lambda j: j.get("created", 0)):
            if job.get("status") in ("queued", "running"):  # interrupted by a restart
                self._save({**job, "status": "queued"})
                self._queue.append(job["id"])
        if autostart:
            self.start()

    # -- paths ------------------------------------------------------------------------------

    def resolve(self, rel: str) -> Path:
        """The slide file ``rel`` names under the root.

        Raises:
            HTTPError: 400 absolute path or ``..``, 403 outside the root through a symlink,
                404 missing, 422 not a slide file.
        """
        from medattn.infer.cohort import SLIDE_SUFFIXES

        text = (rel or "").strip()
        if not text or "\x00" in text:
            raise HTTPError(400, "invalid_path", "give the slide's path relative to the slide root, e.g. "
                                                 "cohort/a.svs")
        if PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute() or text.startswith("\\") \
                or PureWindowsPath(text).drive:
            raise HTTPError(400, "invalid_path", f"'{text}' is an absolute path; give a path relative to the "
                                                 "slide root")
        if ".." in PurePosixPath(text.replace("\\", "/")).parts:
            raise HTTPError(400, "invalid_path", f"'{text}' climbs out with '..'; give a path inside the slide root")
        candidate = self.root / text
        try:
            target = candidate.resolve(strict=True)
        except (FileNotFoundError, NotADirectoryError):
            raise HTTPError(404, "not_found", f"no slide '{text}' under the slide root") from None
        except (OSError, RuntimeError):  # symlink loop, permission
            raise HTTPError(403, "outside_root", f"'{text}' cannot be resolved inside the slide root") from None
        if not target.is_relative_to(self.root):
            raise HTTPError(403, "outside_root", f"'{text}' leads outside the slide root (a symlink); only slides "
                                                 "under the root are served")
        if not target.is_file():
            raise HTTPError(422, "invalid_path", f"'{text}' is not a file")
        if target.suffix.lower() not in SLIDE_SUFFIXES:
            raise HTTPError(415, "unsupported_format", f"'{text}' is not a whole-slide image "
                                                       f"({', '.join(SLIDE_SUFFIXES)})")
        return target

    def _dir(self, job_id: str) -> Path:
        if not _ID.fullmatch(job_id or "") or not (self.out / job_id / "job.json").is_file():
            raise HTTPError(404, "not_found", f"no slide job '{job_id}'")
        return self.out / job_id

    def _jobs_on_disk(self) -> list[dict[str, Any]]:
        jobs = []
        for f in self.out.glob("*/job.json"):
            if _ID.fullmatch(f.parent.name):
                try:
                    jobs.append(json.loads(f.read_text(encoding="utf-8")))
                except (OSError, json.JSONDecodeError):
                    continue
        return jobs

    def _save(self, job: dict[str, Any]) -> None:
        atomic_write_json(self.out / job["id"] / "job.json", job)

    def _load(self, job_id: str) -> dict[str, Any]:
        return json.loads((self._dir(job_id) / "job.json").read_text(encoding="utf-8"))

    # -- API --------------------------------------------------------------------------------

    def submit(self, rel: str) -> dict[str, Any]:
        """Queue the slide ``rel``; its job as :meth:`status` shows it.

        Raises:
            HTTPError: a refused path (see :meth:`resolve`), or 503 when the queue is full.
        """
        target = self.resolve(rel)
        with self._cv:
            if len(self._queue) >= self.max_queue:
                raise HTTPError(503, "busy", f"{len(self._queue)} slide jobs are waiting (the limit); retry later")
            job = {"id": uuid.uuid4().hex, "path": rel.strip(), "file": str(target), "status": "queued",
                   "created": time.time(), "started": None, "finished": None, "error": None}
            ensure_dir(self.out / job["id"])
            self._save(job)
            self._queue.append(job["id"])
            self._cv.notify()
        return self.status(job["id"])

    def status(self, job_id: str) -> dict[str, Any]:
        """The job: status, progress (tiles or blocks done / total), result files, summary."""
        job = self._load(job_id)
        done, total = self._progress.get(job_id, (0, 0))
        res = self.out / job_id / _SLIDE
        body: dict[str, Any] = {k: job[k] for k in ("id", "path", "status", "created", "started", "finished", "error")}
        if job["status"] == "queued":
            with self._cv:
                body["queue_position"] = list(self._queue).index(job_id) + 1 if job_id in self._queue else None
        if job["status"] == "done":
            body["progress"] = {"done": 1, "total": 1, "fraction": 1.0}
            s = res / "summary.json"
            body["summary"] = json.loads(s.read_text(encoding="utf-8")) if s.is_file() else None
            body["files"] = {n: f"/v1/slides/{job_id}/files/{n}" for n in FILES if (res / n).is_file()}
        else:
            body["progress"] = {"done": done, "total": total, "fraction": round(done / total, 4) if total else 0.0}
        return body

    def list(self) -> list[dict[str, Any]]:
        """Every job, newest first (id, path, status, created)."""
        jobs = sorted(self._jobs_on_disk(), key=lambda j: j.get("created", 0), reverse=True)
        return [{k: j.get(k) for k in ("id", "path", "status", "created", "finished")} for j in jobs]

    def file(self, job_id: str, name: str) -> Path:
        """A result file of a finished job (``name`` from :data:`FILES` or :data:`ALIASES`)."""
        job = self._load(job_id)
        fname = ALIASES.get(name, name)
        if fname not in FILES:
            raise HTTPError(404, "not_found", f"no result file '{name}'; valid: {', '.join([*ALIASES, *FILES])}")
        if job["status"] != "done":
            raise HTTPError(409, "not_ready", f"slide job {job_id} is {job['status']}; results come when it is done")
        path = self.out / job_id / _SLIDE / fname
        if not path.is_file():
            raise HTTPError(404, "not_found", f"slide job {job_id} wrote no '{fname}'")
        return path

    # -- worker -----------------------------------------------------------------------------

    def start(self) -> SlideJobs:
        """Start the worker thread (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="medattn-slide-jobs", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the current tile batch; a running job stays ``running`` on disk and is
        resumed by the next server."""
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._stop.is_set():
                    self._cv.wait(1.0)
                if self._stop.is_set():
                    return
                job_id = self._queue.popleft()
            try:
                self._run(job_id)
            except _Stopped:
                return
            except Exception as exc:  # noqa: BLE001 - e.g. a full disk: that job fails, the worker goes on
                from medattn.infer.slide_io import error_line

                try:
                    self._save({**self._load(job_id), "status": "failed", "finished": time.time(),
                                "error": error_line(exc)})
                except Exception:  # noqa: BLE001 - nothing more can be recorded
                    pass

    def _run(self, job_id: str) -> None:
        from medattn.infer.cohort import SlideItem, run_one

        job = self._load(job_id)
        job.update(status="running", started=job.get("started") or time.time())
        self._save(job)
        try:
            target = self.resolve(job["path"])  # again: the root may have changed since
        except HTTPError as exc:
            job.update(status="failed", finished=time.time(), error=exc.detail)
            self._save(job)
            return

        def progress(done: int, total: int) -> None:
            self._progress[job_id] = (done, total)
            if self._stop.is_set():
                raise _Stopped

        row = run_one(self.predictor, SlideItem(_SLIDE, str(target)), self.out / job_id, self.slide_kw, progress)
        if row["status"] == "failed":
            job.update(status="failed", finished=time.time(), error=row["error"])
        else:
            job.update(status="done", finished=time.time())
        self._save(job)
        self._progress.pop(job_id, None)


class SlideRequest(BaseModel):
    """Body of ``POST /v1/slides``."""

    path: str = Field(description="the slide's path relative to the server's slide root, e.g. cohort/a.svs")


_ERRORS: dict[int | str, dict[str, Any]] = {
    c: {"description": d, "content": {"application/json": {"example": {"error": e, "detail": "…"}}}}
    for c, d, e in ((400, "absolute path or '..'", "invalid_path"), (403, "outside the slide root", "outside_root"),
                    (404, "no such slide, job or file", "not_found"), (409, "job not finished", "not_ready"),
                    (415, "not a slide file", "unsupported_format"), (503, "queue full; retry", "busy"))
}


def slide_router(jobs: SlideJobs, dependencies: list[Any] | None = None) -> APIRouter:
    """The ``/v1/slides`` endpoints over ``jobs`` (``dependencies``: e.g. the API-key check) and
    the slide viewer (:mod:`medattn.serve.slide_viewer`)."""
    from medattn.serve.slide_viewer import viewer_router

    outer = APIRouter()
    r = APIRouter(prefix="/v1/slides", tags=["slides"], dependencies=dependencies or [])

    @r.post("", status_code=202, responses=_ERRORS, summary="Queue a slide under the slide root; returns its job")
    async def submit(req: SlideRequest) -> dict[str, Any]:
        return await run_in_threadpool(jobs.submit, req.path)

    @r.get("", summary="Slide jobs, newest first")
    async def list_jobs() -> dict[str, Any]:
        return {"jobs": await run_in_threadpool(jobs.list)}

    @r.get("/{job_id}", responses=_ERRORS, summary="Status, progress and (when done) summary and file links")
    async def status(job_id: str) -> dict[str, Any]:
        return await run_in_threadpool(jobs.status, job_id)

    @r.get("/{job_id}/files/{name}", responses=_ERRORS,
           summary="A result file: heatmap (TIFF), overlay (PNG), geojson, summary, tiles (CSV)")
    async def file(job_id: str, name: str) -> FileResponse:
        path = await run_in_threadpool(jobs.file, job_id, name)
        return FileResponse(path, media_type=FILES[path.name], filename=f"{job_id[:8]}-{path.name}")

    outer.include_router(r)
    outer.include_router(viewer_router(jobs, dependencies))
    return outer
