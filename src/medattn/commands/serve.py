"""CLI verbs of the serve area: ``medattn serve`` and ``medattn export``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import typer

from medattn.commands.options import Device, MaxMegapixels, positive, renamed

__all__ = ["register"]

_OldFormat = renamed("--format", "--to", "the export target, onnx or torchscript; --format is the data format "
                                         "of the data verbs")


def serve(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder or .zip.")],
    host: Annotated[str, typer.Option(help="Interface to bind (loopback by default; 0.0.0.0 exposes it).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    api_key_env: Annotated[str | None, typer.Option(
        "--api-key-env", help="Name of an environment variable holding the API key (X-API-Key header).")] = None,
    ui: Annotated[bool, typer.Option(help="Mount the web dashboard at /.")] = True,
    max_upload_mb: Annotated[float, typer.Option(callback=positive, help="Largest upload per file, MB.")] = 16.0,
    max_files: Annotated[int, typer.Option(min=1, help="Most files per /v1/predict request.")] = 16,
    max_megapixels: MaxMegapixels = 50.0,
    max_batch: Annotated[int, typer.Option(min=1, help="Largest micro-batch.")] = 16,
    max_wait_ms: Annotated[float, typer.Option(min=0.0, help="Longest wait for a micro-batch to fill, ms.")] = 5.0,
    device: Device = None,
    slide_root: Annotated[Path | None, typer.Option(help="Serve slide jobs (POST /v1/slides) on slides under this "
                                                         "folder only.")] = None,
    slide_out: Annotated[Path, typer.Option(help="Folder of the slide jobs (kept across restarts; unfinished jobs "
                                                 "resume).")] = Path("slide-jobs"),
    max_slide_jobs: Annotated[int, typer.Option(min=1, help="Most slide jobs waiting to run (503 beyond).")] = 8,
    samples: Annotated[Path | None, typer.Option(help="Folder of sample images the dashboard offers (default: the "
                                                      "bundle's own samples/; synthetic ones only for a bundle "
                                                      "trained on synthetic data).")] = None,
) -> None:
    """Serve BUNDLE: REST API under /v1, health at /healthz and /readyz, dashboard at /; with
    --slide-root, slide jobs under /v1/slides."""
    from medattn.errors import ConfigError
    from medattn.extras import require_extra

    require_extra("serve", ["fastapi", "uvicorn", ("python_multipart", "multipart"), "fastapi_offline"]
                  + (["gradio"] if ui else []), "medattn serve")

    key = None
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise ConfigError(f"--api-key-env {api_key_env}: that environment variable is unset or empty")
    if samples is not None:  # checked before anything starts
        from medattn.serve.samples import sample_images

        sample_images({}, folder=samples)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import uvicorn

    from medattn.serve.api import create_app
    from medattn.serve.limits import Limits

    limits = Limits(max_upload_bytes=int(max_upload_mb * (1 << 20)), max_files=max_files,
                    max_pixels=int(max_megapixels * 1e6))
    jobs = None if slide_root is None else {"slide_root": slide_root, "out_root": slide_out, "max_queue": max_slide_jobs}
    app = create_app(bundle, api_key=key, limits=limits, ui=ui, max_batch=max_batch, max_wait_ms=max_wait_ms,
                     device=device, slide_jobs=jobs, samples=samples)
    if host not in ("127.0.0.1", "localhost", "::1") and not key:
        typer.echo(f"warning: serving on {host} without an API key; anyone who can reach it can use it", err=True)
    typer.echo(f"serving {bundle} on http://{host}:{port} (API docs at /docs)")
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_keep_alive=5)


def export(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder or .zip.")],
    to: Annotated[Literal["onnx", "torchscript"], typer.Option("--to", help="Export target: onnx or torchscript.")]
    = "onnx",
    out: Annotated[Path | None, typer.Option(help="Output file (default: next to the bundle).")] = None,
    atol: Annotated[float, typer.Option(callback=positive, help="Largest allowed |export − PyTorch| on random "
                                                                "inputs.")] = 1e-4,
    opset: Annotated[int, typer.Option(min=1, help="ONNX opset.")] = 18,
    old_format: _OldFormat = None,
) -> None:
    """Export BUNDLE to ONNX (dynamic batch axis) or TorchScript and check parity with PyTorch."""
    from medattn.export import export_bundle

    if to == "onnx":
        from medattn.extras import require_extra

        require_extra("export", ["onnx", "onnxruntime", "onnxscript"], "medattn export --to onnx")
    res = export_bundle(bundle, to, out, atol=atol, opset=opset)
    typer.echo(f"wrote {res['path']} ({res['format']}); parity with PyTorch: max abs diff "
               f"{res['max_abs_diff']:.2e} on batches {res['batches']}")


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    app.command("serve")(serve)
    app.command("export")(export)
