"""Options shared by several verbs: one name, one meaning, one help text, one check.

Every verb declares a shared option with the type alias below (``alpha: Alpha = None``), so
``--split`` is always a split *name* and ``--split-csv`` the file, ``--alpha`` always the conformal
miscoverage, ``--resume`` always "continue the interrupted work in the output folder", and
``--on-bad-file`` has the same choices and default wherever many files are read. Values are checked
while the command line is parsed (callbacks, ranges, ``exists``), so a refused option never leaves
an output folder behind. ``tests/test_cli_options.py`` walks every verb and fails when a verb
declares one of these names by hand, or uses a name of two verbs without a shared declaration here.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

__all__ = [
    "DEFAULT_ON_BAD_FILE", "SPLIT_NAMES", "SHARED", "RENAMED_PREFIX", "on_bad_file_mode", "positive", "renamed", "shared_help",
    "Alpha", "BatchSize", "Chain", "CiLevel", "Classifier", "Contrast", "DataFormat", "DataPath", "Device", "Dim",
    "Fill", "Folds", "GroupPattern", "Margin", "MaxMegapixels", "Mode", "Mpp", "NBoot", "OnBadFile", "Resume", "Seed",
    "Segmenter", "SetOverrides", "Smoke", "SplitCsv", "SplitName", "Workers",
]

DEFAULT_ON_BAD_FILE: Literal["skip", "error"] = "skip"
"""What every verb does with an unreadable, truncated or empty file unless told otherwise: leave it
out, list it in the output folder and go on (the recipe field ``data.on_bad_file`` has the same
default)."""

SPLIT_NAMES = ("train", "valid", "test")
"""The values ``--split`` takes."""

RENAMED_PREFIX = "RENAMED:"
"""Help text prefix of the hidden options that only say an option was renamed."""


def _open_unit(value: float | None) -> float | None:
    if value is not None and not 0 < value < 1:
        raise typer.BadParameter(f"must be between 0 and 1 (exclusive), got {value:g}")
    return value


def positive(value: float | None) -> float | None:
    """Option callback: ``None`` or a number > 0."""
    if value is not None and not value > 0:
        raise typer.BadParameter(f"must be > 0, got {value:g}")
    return value


def _split_name(value: str | None) -> str | None:
    if value is None or value in SPLIT_NAMES:
        return value
    looks_like_file = "/" in value or "\\" in value or Path(value).suffix.lower() == ".csv" or Path(value).is_file()
    if looks_like_file:
        raise typer.BadParameter(f"'{value}' looks like a file; --split takes a split name "
                                 f"({', '.join(SPLIT_NAMES)}) and a split file goes to --split-csv")
    raise typer.BadParameter(f"'{value}' is not a split name; use {', '.join(SPLIT_NAMES)}")


def _device(value: str | None) -> str | None:
    if value is None:
        return value
    import torch

    try:
        dev = torch.device(value)
    except (RuntimeError, ValueError):
        raise typer.BadParameter(f"'{value}' is not a torch device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise typer.BadParameter(f"'{value}': no CUDA device on this machine; use cpu")
    return value


def on_bad_file_mode(value: str | None, fallback: str | None = None) -> Literal["skip", "error"]:
    """The ``--on-bad-file`` value in effect: the option, else ``fallback`` (``train``: the
    recipe's ``data.on_bad_file``), else :data:`DEFAULT_ON_BAD_FILE`."""
    mode = value or fallback or DEFAULT_ON_BAD_FILE
    if mode not in ("skip", "error"):
        from medattn.errors import ConfigError

        raise ConfigError(f"--on-bad-file must be 'skip' or 'error', got '{mode}'")
    return mode  # type: ignore[return-value]


def renamed(old: str, new: str, note: str = "") -> Any:
    """A hidden option ``old`` that only refuses itself in one line naming ``new``.

    Args:
        old: the former option name, e.g. ``--alpha``.
        new: the option that replaces it, e.g. ``--ci-level``.
        note: what changed, e.g. ``"the confidence level, e.g. 0.95"``.
    """
    def refuse(value: Any) -> None:
        if value is not None:
            raise typer.BadParameter(f"{old} was renamed {new}" + (f" ({note})" if note else ""))

    return Annotated[str | None, typer.Option(old, hidden=True, callback=refuse, help=f"{RENAMED_PREFIX} {new}")]


# --- data --------------------------------------------------------------------------------------
DataFormat = Annotated[str | None, typer.Option(
    "--format", help="Data format: pcam, folders, csv, cxr14, idc, seg_pairs or monuseg (default: detected).")]
DataPath = Annotated[Path | None, typer.Option(
    "--data", exists=True, help="Data folder (or CSV manifest); default: the data the recipe names (data.root) "
                                "or the run was trained on.")]
GroupPattern = Annotated[str | None, typer.Option(
    "--group-pattern", help="Regular expression naming the patient/source image in each file name of class-folder "
                            "data (first capture group), e.g. '^(\\d+)-' for Herlev; the recipe's "
                            "data.options.group_pattern.")]
SplitName = Annotated[str, typer.Option(
    "--split", callback=_split_name, help=f"Split name: {', '.join(SPLIT_NAMES)} (a split file is --split-csv).")]
SplitCsv = Annotated[Path | None, typer.Option(
    "--split-csv", exists=True, dir_okay=False,
    help="split.csv (columns file, split, group[, label], as `medattn split` writes it) fixing each item's split, "
         "e.g. a published split.")]
OnBadFile = Annotated[Literal["skip", "error"] | None, typer.Option(
    "--on-bad-file", show_default=False,
    help="Unreadable, truncated or empty files: 'skip' leaves them out, lists them in the output folder and goes "
         "on; 'error' stops at the first, naming it. Default: skip (train: the recipe's data.on_bad_file, itself "
         "skip unless the recipe says otherwise).")]
Workers = Annotated[int, typer.Option(
    "--workers", min=0, help="Parallel readers of the input (threads or DataLoader processes; 0 = this process).")]

# --- runs --------------------------------------------------------------------------------------
Resume = Annotated[bool, typer.Option(
    "--resume", help="Continue the interrupted work in the output folder: what is finished is kept and not "
                     "redone.")]
SetOverrides = Annotated[list[str] | None, typer.Option(
    "--set", help="Override a recipe field, e.g. --set optimizer.lr=1e-3 (repeatable).")]
Smoke = Annotated[bool, typer.Option(
    "--smoke", help="Shrink the recipe to seconds; synthetic data when --data is omitted.")]
Folds = Annotated[int | None, typer.Option(
    "--folds", min=2, help="K-fold cross-validation: the test split stays held out and the rest is divided into K "
                           "grouped, stratified folds.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed (the same seed gives the same result).")]
NBoot = Annotated[int, typer.Option(
    "--n-boot", min=10, help="Bootstrap resamples of the confidence intervals (patients when groups are known).")]
CiLevel = Annotated[float, typer.Option(
    "--ci-level", callback=_open_unit, help="Confidence level of the intervals, e.g. 0.95.")]
Contrast = Annotated[float, typer.Option(
    "--contrast", help="Tumour/normal contrast of SynthPCam (lower = harder).")]

# --- models and inference ----------------------------------------------------------------------
Device = Annotated[str | None, typer.Option(
    "--device", callback=_device, help="torch device (default: cuda when present, else cpu).")]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="Images (or tiles) per forward pass.")]
MaxMegapixels = Annotated[float, typer.Option(
    "--max-megapixels", callback=positive,
    help="Largest image accepted, in megapixels (read from the header before decoding).")]
Alpha = Annotated[float | None, typer.Option(
    "--alpha", callback=_open_unit,
    help="Conformal miscoverage of the prediction sets, in (0, 1) (bundles with conformal calibration; "
         "default: the bundle's).")]
Mpp = Annotated[float | None, typer.Option(
    "--mpp", callback=positive,
    help="µm per pixel of the inputs (slides: of level 0), replacing what their headers or slide metadata "
         "declare; compared with the bundle's scale (images: a 'scale' warning beyond 25%; slides: read at the "
         "bundle's scale, needed when a slide declares none).")]

# --- composite pipelines -----------------------------------------------------------------------
Segmenter = Annotated[Path | None, typer.Option("--segmenter", help="Segmentation (U-Net) bundle folder or .zip.")]
Classifier = Annotated[Path | None, typer.Option("--classifier", help="Classification bundle folder or .zip.")]
Chain = Annotated[Path | None, typer.Option("--chain", help="A chained bundle (instead of --segmenter/--classifier).")]
Mode = Annotated[str, typer.Option("--mode", help="mask (background → fill), dim (background faded) or crop "
                                                  "(box of the largest region).")]
Dim = Annotated[float, typer.Option("--dim", help="dim mode: share of the background's contrast kept (0–1).")]
Fill = Annotated[float, typer.Option("--fill", help="mask/dim: background value in [0, 1] (0 = black, 1 = white).")]
Margin = Annotated[float, typer.Option("--margin", help="crop mode: fraction of the box added on every side.")]


def _registry(names: Iterable[str]) -> dict[str, Any]:
    g = globals()
    out: dict[str, Any] = {}
    for n in names:
        info = g[n].__metadata__[0]  # Annotated: typer.Option's first argument is the option name
        out[str(info.default)] = g[n]
    return out


SHARED: dict[str, Any] = _registry([
    "Alpha", "BatchSize", "Chain", "CiLevel", "Classifier", "Contrast", "DataFormat", "DataPath", "Device", "Dim",
    "Fill", "Folds", "GroupPattern", "Margin", "MaxMegapixels", "Mode", "Mpp", "NBoot", "OnBadFile", "Resume", "Seed",
    "Segmenter", "SetOverrides", "Smoke", "SplitCsv", "SplitName", "Workers",
])
"""Option name → its shared declaration (the test checks every verb against it)."""


def shared_help(name: str) -> str:
    """The help text every verb shows for the shared option ``name``."""
    return str(SHARED[name].__metadata__[0].help)

