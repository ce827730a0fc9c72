"""Command line: every verb of medattn (``medattn --help``).

Errors a user can cause are printed in one line and exit with code 2 (``--debug`` shows the
traceback).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from medattn.commands.options import Contrast, NBoot, Seed, Workers
from medattn.errors import MedattnError

__all__ = ["app", "main"]

app = typer.Typer(
    name="medattn",
    help="Train, evaluate, explain and serve attention-based CNNs for medical images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_STATE = {"debug": False}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("medattn")
    except PackageNotFoundError:  # running from a checkout without installing
        return "unknown (not installed)"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"medattn {_version()}")
        raise typer.Exit(0)


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False,
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_show_version,
                                          help="Print the medattn version and exit.")] = False,
) -> None:
    _STATE["debug"] = debug


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output folder (data, runs, report.html).")] = Path("runs/demo"),
    n_train: Annotated[int, typer.Option(help="Training patches.")] = 2048,
    n_valid: Annotated[int, typer.Option(help="Validation patches.")] = 512,
    n_test: Annotated[int, typer.Option(help="Test patches.")] = 512,
    epochs: Annotated[int, typer.Option(help="Maximum epochs per model (early stopping on validation AUROC).")] = 4,
    width: Annotated[float, typer.Option(help="Channel multiplier of the 64-128-128-256 CNN.")] = 0.5,
    contrast: Contrast = 0.4,
    seed: Seed = 0,
    n_boot: NBoot = 1000,
    workers: Workers = 0,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Generate SynthPCam, train a baseline and an attention CNN, compare them with CIs and CAM
    localisation, and write runs/demo/report.html."""
    from medattn.demo import DemoConfig, run_demo

    for name, val in (("n-train", n_train), ("n-valid", n_valid), ("n-test", n_test), ("epochs", epochs)):
        if val < 1:
            raise MedattnError(f"--{name} must be >= 1, got {val}")
    run_demo(DemoConfig(out=str(out), n_train=n_train, n_valid=n_valid, n_test=n_test, epochs=epochs,
                        width=width, contrast=contrast, seed=seed, n_boot=n_boot, num_workers=workers,
                        progress=progress))


@app.command()
def synth(
    kind: Annotated[str, typer.Argument(help="pcam, nuclei, folders, cxr14 or graded")],
    out: Annotated[Path, typer.Argument(help="Output folder.")],
    n: Annotated[int, typer.Option(help="Number of items (training split for pcam).")] = 512,
    seed: Seed = 0,
    contrast: Contrast = 1.0,
    distractors: Annotated[float, typer.Option(help="pcam: distractor probability.")] = 0.5,
    tumour_size: Annotated[float, typer.Option(help="pcam: tumour size scale.")] = 1.0,
) -> None:
    """Write a synthetic dataset in a real format."""
    from medattn.data.synthetic import PCamDifficulty, write_pcam

    if kind == "pcam":
        d = PCamDifficulty(tumour_size=tumour_size, contrast=contrast, distractors=distractors)
        root = write_pcam(out, {"train": n, "valid": max(1, n // 4), "test": max(1, n // 4)}, seed=seed, difficulty=d)
        typer.echo(f"wrote SynthPCam to {root}")
        return
    from medattn.data.synthetic import write_synthetic  # nuclei, folders, cxr14, graded

    typer.echo(f"wrote synthetic {kind} to {write_synthetic(kind, out, n=n, seed=seed)}")


# Each area adds its verbs from medattn/commands/<area>.py (imported lazily inside the verbs).
_COMMAND_MODULES = ("data", "metrics", "explain", "serve", "engine", "pipelines", "infer", "trust")


def _register_all() -> None:
    import importlib

    for mod in _COMMAND_MODULES:
        importlib.import_module(f"medattn.commands.{mod}").register(app)


_register_all()


def _click_classes() -> tuple[tuple[type, ...], tuple[type, ...], tuple[type, ...]]:
    """(usage errors, aborts, exits) of the click typer bundles and of a standalone click."""
    usage: list[type] = []
    aborts: list[type] = [typer.Abort, KeyboardInterrupt]
    exits: list[type] = [typer.Exit]
    try:  # typer >= 0.24 ships its own copy of click as typer._click
        from typer._click import exceptions as bundled

        usage.append(bundled.ClickException)
    except ImportError:
        pass
    try:
        import click

        usage.append(click.exceptions.ClickException)
        aborts.append(click.exceptions.Abort)
        exits.append(click.exceptions.Exit)
    except ImportError:
        pass
    return tuple(usage), tuple(aborts), tuple(exits)


def _usage_line(exc: Exception) -> str:
    """One line: the click message and where the help is, e.g. ``see `medattn train --help```."""
    msg = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
    ctx = getattr(exc, "ctx", None)
    path = ctx.command_path if ctx is not None else "medattn"
    return f"error: {msg} (see `{path} --help`)"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``medattn`` console script.

    Returns:
        The exit code: 0 success, 2 a user error (usage, recipe, data; printed in one line),
        130 interrupted.
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    # tifffile logs its own diagnosis of a malformed TIFF with object reprs ("<tifffile.TiffPages @…>") and
    # Pillow warns about corrupt EXIF with a source line; medattn's one-line messages name the file instead
    logging.getLogger("tifffile").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
    from medattn.runtime import tune_allocator

    tune_allocator()
    usage, aborts, exits = _click_classes()
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="medattn")
    except MedattnError as exc:
        if _STATE["debug"]:
            raise
        typer.echo(f"error: {exc}", err=True)
        return 2
    except aborts:
        typer.echo("aborted", err=True)
        return 130
    except exits as exc:
        return int(getattr(exc, "exit_code", 0) or 0)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except usage as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `medattn` / `medattn pipeline`
            typer.echo(exc.format_message())  # the help text
            return 2
        typer.echo(_usage_line(exc), err=True)
        return 2
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())


def run() -> None:
    """Console-script wrapper: exit with :func:`main`'s code."""
    sys.exit(main())
