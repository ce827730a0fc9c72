"""REST API (FastAPI) for a model bundle, with the Gradio dashboard mounted at ``/``.

Endpoints: ``POST /v1/predict`` (multipart ``file``, repeatable), ``POST /v1/explain``,
``GET /v1/model``, ``GET /healthz``, ``GET /readyz``, ``/openapi.json``, ``/docs`` and ``/redoc``
(served from local files, :mod:`medattn.serve.docs`).
Inference runs in a micro-batching worker thread, decoding in the thread pool: the event loop
never blocks. Every bad input is answered with a 4xx JSON body ``{"error", "detail"}``.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from medattn import __version__
from medattn.bundle import Predictor, load_bundle
from medattn.errors import MedattnError
from medattn.infer.records import response_fields
from medattn.serve.batching import BatcherBusy, MicroBatcher
from medattn.serve.limits import BodySizeLimit, HTTPError, Limits, decode_upload, status_for

__all__ = ["create_app", "model_card"]

_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="Required when the server has a key.")
_ERRORS: dict[int | str, dict[str, Any]] = {
    c: {"description": d, "content": {"application/json": {"example": {"error": e, "detail": "…"}}}}
    for c, d, e in ((401, "missing or wrong API key", "unauthorized"), (413, "upload or image too large", "too_large"),
                    (415, "not an accepted image format", "unsupported_format"),
                    (422, "corrupt image or bad parameter", "invalid_input"),
                    (503, "server busy or timed out; retry", "busy"))
}


def model_card(predictor: Predictor, limits: Limits, methods: list[str]) -> dict[str, Any]:
    """What ``GET /v1/model`` returns: bundle.json plus the model id and serving limits."""
    meta = predictor.meta
    return {
        "id": _model_id(meta), "version": str(meta.get("version", meta.get("medattn_version", ""))),
        "server_version": __version__, **{k: v for k, v in meta.items() if k != "weights_file"},
        "explain_methods": methods,
        "limits": {"max_upload_bytes": limits.max_upload_bytes, "max_files": limits.max_files,
                   "max_pixels": limits.max_pixels, "formats": list(limits.formats)},
    }


def _model_id(meta: dict[str, Any]) -> str:
    return f"{meta['architecture']['name']}-{str(meta['weights_sha256'])[:12]}"


def create_app(
    bundle_path: str | Path,
    api_key: str | None = None,
    *,
    limits: Limits | None = None,
    ui: bool | None = None,
    max_batch: int = 16,
    max_wait_ms: float = 5.0,
    device: str | None = None,
    slide_jobs: dict[str, Any] | None = None,
    samples: str | Path | None = None,
) -> FastAPI:
    """Build the app serving ``bundle_path``.

    Args:
        bundle_path: bundle folder or ``.zip`` (loaded now; a bad bundle raises BundleError).
        api_key: when set, every ``/v1`` call needs it in ``X-API-Key`` (401 otherwise), and the
            dashboard asks for it as its password.
        limits: upload limits (defaults: :class:`Limits`).
        ui: mount the Gradio dashboard at ``/`` (default: yes).
        max_batch: largest micro-batch.
        max_wait_ms: longest time a request waits for others to share its batch.
        device: torch device (default CUDA when present, else CPU).
        slide_jobs: keyword arguments of :class:`medattn.serve.slides.SlideJobs` (``slide_root``,
            ``out_root``, ``max_queue``): serve ``/v1/slides`` (default: not served).
        samples: a folder of sample images for the dashboard (default: the bundle's own, see
            :func:`medattn.serve.samples.sample_images`).
    """
    lim = limits or Limits()
    predictor = load_bundle(bundle_path, device=device, max_pixels=lim.max_pixels)
    batcher = MicroBatcher(predictor.predict_rows, max_batch=max_batch, max_wait_ms=max_wait_ms).start()
    from medattn.serve.views import Explainer

    explainer = Explainer(predictor)
    card = model_card(predictor, lim, explainer.methods)
    ident = {"id": card["id"], "name": predictor.meta["architecture"]["name"], "version": card["version"]}

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # noqa: ANN202
        batcher.start()
        yield
        batcher.stop()

    from medattn.serve.docs import add_offline_docs, docs_assets_dir

    assets = docs_assets_dir()  # local Swagger UI/ReDoc files: /docs works offline
    offline = {"docs_url": None, "redoc_url": None} if assets is not None else {}
    app = FastAPI(title="medattn model server", version=__version__, lifespan=lifespan, **offline,
                  description=f"Serving `{ident['id']}` ({predictor.task}, classes: {', '.join(predictor.class_names)}).")
    if assets is not None:
        add_offline_docs(app, assets)
    app.state.predictor, app.state.batcher, app.state.explainer, app.state.limits = predictor, batcher, explainer, lim

    async def require_key(key: Annotated[str | None, Depends(_KEY_HEADER)]) -> None:
        if api_key and not hmac.compare_digest((key or "").encode(), api_key.encode()):
            raise HTTPError(401, "unauthorized", "missing or wrong API key; send it in the X-API-Key header")

    @app.exception_handler(HTTPError)
    async def _http_error(_r: Request, exc: HTTPError) -> JSONResponse:
        headers = {"WWW-Authenticate": "APIKey"} if exc.status == 401 else None
        return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=exc.status, headers=headers)

    @app.exception_handler(MedattnError)
    async def _medattn_error(r: Request, exc: MedattnError) -> JSONResponse:
        return await _http_error(r, status_for(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_r: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()]
        return JSONResponse({"error": "invalid_request", "detail": "; ".join(parts)[:500]}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _starlette(_r: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": "http_error", "detail": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    async def _prepare(f: UploadFile, tile: bool | None = None, mpp: float | None = None) -> Any:
        """Decode (the one decoder, with the resolution its header declares) and apply the bundle's
        large-input rule and preparation; ``mpp`` (the request's) replaces the header's."""
        data = await f.read(lim.max_upload_bytes + 1)
        label = f"'{f.filename or 'upload'}'"
        info: dict[str, Any] = {}
        img = await run_in_threadpool(decode_upload, data, f.filename or "upload", lim,
                                      lambda d, name: predictor.decode(d, name=name, info=info))
        res, source = (mpp, "given") if mpp else (info.get("mpp"), info.get("mpp_source"))
        try:
            return await run_in_threadpool(lambda: predictor.prepare_input(img, tile=tile, name=label, mpp=res,
                                                                           mpp_source=source))
        except MedattnError as exc:
            raise status_for(exc) from None

    async def _forward(prep: Any) -> Any:
        """``(probabilities, details)`` of a prepared input (:meth:`Predictor.predict_tensor`): one view
        through the micro-batcher (requests share forward passes), tiles and segmentation fields in
        the thread pool."""
        if len(prep.x) != 1 or prep.handling == "segmented":
            details: dict[str, Any] = {}
            try:
                probs = await asyncio.wait_for(run_in_threadpool(predictor.forward, prep, 16, details), lim.timeout_s)
                return probs, details
            except TimeoutError:
                raise HTTPError(503, "busy", f"inference took longer than {lim.timeout_s:g} s; retry") from None
        batcher.start()
        try:
            row = await asyncio.wait_for(batcher.submit(prep.x[0]), lim.timeout_s)
        except BatcherBusy as exc:
            raise HTTPError(503, "busy", str(exc)) from None
        except TimeoutError:
            raise HTTPError(503, "busy", f"inference took longer than {lim.timeout_s:g} s; retry") from None
        import numpy as np

        return np.asarray(row[0])[None], row[1]

    @app.get("/healthz", tags=["health"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="Readiness: the model is loaded and the worker runs")
    async def readyz() -> JSONResponse:
        ok = batcher.start().running
        body = {"ready": ok, "model": ident["id"], "batches": batcher.stats.batches,
                "mean_batch": round(batcher.stats.mean_batch, 2)}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/v1/model", tags=["model"], summary="Model card (bundle.json)", dependencies=[Depends(require_key)],
             responses={401: _ERRORS[401]})
    async def get_model() -> dict[str, Any]:
        return card

    @app.post("/v1/predict", tags=["model"], dependencies=[Depends(require_key)], responses=_ERRORS,
              summary="Predict one or several images (repeat the multipart field `file`)")
    async def predict(
        file: Annotated[list[UploadFile], File(description="PNG, JPEG, BMP, TIFF or DICOM")],
        strict: Annotated[bool, Query(description="answer 422 when any input has a warning (size, channels, "
                                                  "intensity, out-of-distribution)")] = False,
        alpha: Annotated[float | None, Query(gt=0, lt=1, description="miscoverage of the conformal prediction "
                                                                     "sets (default: the bundle's, 0.1)")] = None,
        method: Annotated[str | None, Query(description="multiclass set score: aps (default) or raps")] = None,
        mc_samples: Annotated[int, Query(ge=0, le=64, description="MC-dropout passes (0 = off)")] = 0,
        mpp: Annotated[float | None, Query(gt=0, description="µm per pixel of the images (replaces what their "
                                                             "headers declare); compared with the bundle's "
                                                             "scale")] = None,
        mpp_form: Annotated[float | None, Form(alias="mpp", gt=0, description="the same as the query field mpp, "
                                                                              "sent as a form field")] = None,
    ) -> dict[str, Any]:
        if len(file) > lim.max_files:
            raise HTTPError(413, "too_large", f"{len(file)} files sent; the limit is {lim.max_files} per request")
        prepared = [await _prepare(f, mpp=mpp_form or mpp) for f in file]
        rows = await asyncio.gather(*(_forward(p) for p in prepared))
        preds = []
        for f, prep, (probs, details) in zip(file, prepared, rows, strict=True):
            res = await run_in_threadpool(_conclude, prep, probs, alpha, method, mc_samples, details)
            preds.append({"file": f.filename, **response_fields(res)})
        if strict and any(p["warnings"] for p in preds):
            from medattn.trust.assess import warnings_summary

            return JSONResponse({"error": "input_warnings", "detail": warnings_summary(preds)[:2000],
                                 "warnings": {p["file"]: p["warnings"] for p in preds if p["warnings"]}},
                                status_code=422)
        return {"model": ident, "task": predictor.task, "predictions": preds}

    def _conclude(prep: Any, probs: Any, alpha: float | None, method: str | None, mc: int,
                  details: dict[str, Any] | None = None) -> dict[str, Any]:
        """The answer of :meth:`Predictor.conclude` (the same as every other door's)."""
        try:
            return predictor.conclude(prep, probs, alpha=alpha, method=method, mc_samples=mc, details=details)
        except MedattnError as exc:
            raise status_for(exc) from None

    @app.post("/v1/explain", tags=["model"], dependencies=[Depends(require_key)], responses=_ERRORS,
              summary="Explanation overlay (PNG, or JSON with base64 PNGs) for one image")
    async def explain(
        file: Annotated[UploadFile, File(description="one image")],
        method: Annotated[str, Form(description="gradcam, gradcam++, …, attention, agcnn, segmentation "
                                                "(this bundle's list: GET /v1/model → explain_methods)")] = "gradcam++",
        target: Annotated[str, Form(description="'top', a class name or a class index")] = "top",
        format: Annotated[str, Form(description="png or json")] = "png",
        strict: Annotated[bool, Query(description="answer 422 when the input breaks the bundle's input "
                                                  "contract (size, channels, intensity)")] = False,
    ) -> Response:
        if format not in ("png", "json"):
            raise HTTPError(422, "invalid_input", f"format must be 'png' or 'json', got '{format}'")
        if method.lower() not in explainer.methods:
            raise HTTPError(422, "invalid_input",
                            f"unknown method '{method}'; valid for this bundle: {', '.join(explainer.methods)}")
        prep = await _prepare(file)
        probs, details = await _forward(prep)
        answer = await run_in_threadpool(_conclude, prep, probs, None, None, 0, details)
        warns = answer.get("warnings") or []
        img = prep.image
        if strict and warns:
            return JSONResponse({"error": "input_warnings", "detail": "; ".join(w["message"] for w in warns)[:2000],
                                 "warnings": {file.filename: warns}}, status_code=422)
        try:
            res = await asyncio.wait_for(run_in_threadpool(explainer.render, img, method, target), lim.timeout_s)
        except TimeoutError:
            raise HTTPError(503, "busy", "the explanation took too long; retry") from None
        from medattn.serve.views import to_png

        png = await run_in_threadpool(to_png, res["overlay"])
        if format == "png":
            return Response(png, media_type="image/png",
                            headers={"X-Medattn-Method": res["method"], "X-Medattn-Target": str(res["target"]),
                                     "X-Medattn-Warnings": ",".join(w["code"] for w in warns)})
        body: dict[str, Any] = {"model": ident, "file": file.filename, "method": res["method"], "target": res["target"],
                                "overlay_png_base64": base64.b64encode(png).decode(), "warnings": warns,
                                "prediction": response_fields(answer)}
        if "crop" in res:
            body["crop_png_base64"] = base64.b64encode(to_png(res["crop"])).decode()
            body.update(box=res["box"], branches=res["branches"])
        return JSONResponse(body)

    if slide_jobs is not None:
        from medattn.serve.slides import SlideJobs, slide_router

        app.state.slide_jobs = SlideJobs(predictor, **slide_jobs)
        app.include_router(slide_router(app.state.slide_jobs, [Depends(require_key)]))
    if ui is None or ui:
        from medattn.serve.ui import mount_ui

        app = mount_ui(app, predictor, explainer, bundle_path=bundle_path, api_key=api_key, limits=lim,
                       samples=samples)
    app.add_middleware(BodySizeLimit, max_bytes=lim.max_body_bytes)
    return app
