"""One meaning per option across every verb (issue 23.6): the checker walks the click tree of
the ``medattn`` typer app and fails on a verb that declares a shared option by hand, takes a split
file under ``--split``, uses ``--alpha`` for anything but conformal miscoverage, or reads many files
without the shared ``--on-bad-file``. It is also run on a small app with such a verb, to show that
it catches one. Refused options leave no output folder (issue 22.4)."""

from __future__ import annotations

import types
import typing
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pytest
import typer
from PIL import Image

from medattn.cli import app, main
from medattn.commands import options
from medattn.commands.options import DEFAULT_ON_BAD_FILE, RENAMED_PREFIX, SHARED, SPLIT_NAMES

GENERIC = {"--out": "where the verb writes: a file or a folder, said by each verb's help"}
"""Names several verbs use with a verb-specific help on purpose."""

MANY_FILES = {"train", "search", "evaluate", "predict", "slide", "audit", "explain", "seg-metrics",
              "pipeline segment-classify", "pipeline evaluate"}
"""Verbs that read many files: each has the shared --on-bad-file."""

EXEMPT = {
    "split": "lists file names, decodes none",
    "scan": "lists file names, decodes none",
    "validate": "its output is the list of bad files and its exit code says whether there is one",
    "overview": "samples images for statistics; an unreadable one is counted and left out, never used",
    "pipeline save": "reads two bundles",
}
"""Verbs that look like readers of many files but need no --on-bad-file, with the reason."""


def _walk(cmd: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    subs = getattr(cmd, "commands", None)
    if subs is None:
        yield " ".join(path), cmd
        return
    for name, sub in sorted(subs.items()):
        yield from _walk(sub, (*path, name))


def _strip_none(t: Any) -> Any:
    args = typing.get_args(t)
    if typing.get_origin(t) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]  # noqa: UP007
    return t


_INFO_FIELDS = ("callback", "min", "max", "exists", "file_okay", "dir_okay", "hidden", "show_default")


def _options(cmd: Any) -> list[Any]:
    return [p for p in cmd.params if p.param_type_name == "option"]


def _reads_many(cmd: Any) -> bool:
    """A list argument (images, inputs, slides) or a data folder (argument or --data option)."""
    return any((p.param_type_name == "argument" and p.nargs == -1) or p.name in ("data", "true_dir")
               for p in cmd.params)


def violations(typer_app: typer.Typer, many_files: set[str] = MANY_FILES,
               exempt: dict[str, str] | None = None) -> list[str]:
    """Every break of the option rules in ``typer_app`` (empty: all verbs agree)."""
    exempt = EXEMPT if exempt is None else exempt
    bad: list[str] = []
    users: Counter[str] = Counter()
    for path, cmd in _walk(typer.main.get_command(typer_app)):
        names = {}
        for p in _options(cmd):
            name = p.opts[0]
            info = p.type_descriptor.parameter_info
            if p.hidden:
                if not str(p.help).startswith(RENAMED_PREFIX):
                    bad.append(f"{path} {name}: hidden options only say a name was renamed")
                continue
            users[name] += 1
            names[name] = p
            if name in SHARED:
                ref_t, ref = SHARED[name].__origin__, SHARED[name].__metadata__[0]
                if p.help != ref.help:
                    bad.append(f"{path} {name}: help differs from commands/options.py (declare it with the shared type)")
                if _strip_none(p.type_descriptor.annotation) != _strip_none(ref_t):
                    bad.append(f"{path} {name}: type {p.type_descriptor.annotation} differs from the shared {ref_t}")
                for f in _INFO_FIELDS:
                    if getattr(info, f, None) != getattr(ref, f, None):
                        bad.append(f"{path} {name}: {f} differs from the shared declaration")
            if "split" in name and name not in ("--split", "--split-csv"):
                bad.append(f"{path} {name}: a split name is --split, a split file --split-csv")
        if "--split" in names and _strip_none(names["--split"].type_descriptor.annotation) is not str:
            bad.append(f"{path} --split takes a path; a split file is --split-csv")
        if "--alpha" in names and "onformal" not in str(names["--alpha"].help):
            bad.append(f"{path} --alpha must mean conformal miscoverage")
        if path in exempt:
            continue
        if path in many_files or _reads_many(cmd):
            p = names.get("--on-bad-file")
            if p is None:
                bad.append(f"{path} reads many files but has no --on-bad-file")
            elif p.default is not None or typing.get_args(p.type_descriptor.annotation) != ("skip", "error"):
                bad.append(f"{path} --on-bad-file: default {p.default!r}, choices "
                           f"{typing.get_args(p.type_descriptor.annotation)}; want the shared ones")
    for name, n in users.items():
        if n > 1 and name not in SHARED and name not in GENERIC:
            bad.append(f"{name} is used by {n} verbs: declare it once in commands/options.py")
    return bad


def test_every_verb_follows_the_option_rules() -> None:
    assert violations(app) == []


def test_the_expected_verbs_are_found_and_exist() -> None:
    cmds = dict(_walk(typer.main.get_command(app)))
    assert MANY_FILES <= set(cmds) and set(EXEMPT) <= set(cmds)
    auto = {p for p, c in cmds.items() if _reads_many(c)}
    assert auto - set(EXEMPT) <= MANY_FILES  # the heuristic finds no reader missing from the list
    assert {"predict", "slide", "explain", "train", "evaluate"} <= auto
    counts = Counter(p.opts[0] for c in cmds.values() for p in _options(c) if not p.hidden)
    assert counts["--on-bad-file"] == len(MANY_FILES) and counts["--split-csv"] >= 4


def test_one_default_for_bad_files() -> None:
    from medattn.engine.config import DataConfig

    assert options.on_bad_file_mode(None) == DEFAULT_ON_BAD_FILE == "skip"
    assert DataConfig.model_fields["on_bad_file"].default == DEFAULT_ON_BAD_FILE
    assert options.on_bad_file_mode(None, "error") == "error" and options.on_bad_file_mode("error", "skip") == "error"


def test_checker_catches_a_verb_breaking_the_rules() -> None:
    rogue = typer.Typer()

    @rogue.command("ok")
    def ok(alpha: options.Alpha = None) -> None: ...

    @rogue.command("rogue")
    def rogue_verb(
        images: Annotated[list[Path], typer.Argument()],
        split: Annotated[Path | None, typer.Option("--split", help="split.csv")] = None,
        alpha: Annotated[float, typer.Option("--alpha", help="1 - confidence level")] = 0.05,
        batch_size: Annotated[int, typer.Option("--batch-size", help="my own words")] = 4,
        train_split: Annotated[str, typer.Option("--train-split")] = "x",
    ) -> None: ...

    @rogue.command("rogue2")
    def rogue2(data: Annotated[Path, typer.Argument()], knob: Annotated[int, typer.Option("--knob")] = 1) -> None: ...

    @rogue.command("rogue3")
    def rogue3(knob: Annotated[int, typer.Option("--knob")] = 1) -> None: ...

    found = "\n".join(violations(rogue, many_files=set(), exempt={}))
    for part in ("rogue --split takes a path", "rogue --alpha must mean conformal", "rogue --split: help differs",
                 "rogue --batch-size: help differs", "rogue reads many files but has no --on-bad-file",
                 "rogue2 reads many files", "--train-split: a split name is --split", "--knob is used by 2 verbs"):
        assert part in found, (part, found)
    assert "ok " not in found


# --- the renamed options answer in one line with the new name -----------------------------------


@pytest.mark.parametrize(("argv", "expect"), [
    (["compare", "a", "b", "--alpha", "0.05"], "--alpha was renamed --ci-level"),
    (["export", "b", "--format", "onnx"], "--format was renamed --to"),
    (["pipeline", "segment-classify", "x.png", "--cam", "none"], "--cam was renamed --cam-method"),
    (["audit", "data", "--split", "split.csv"], "No such option: --split (Possible options: --split-csv)"),
    (["validate", "data", "--split", "split.csv"], "(Possible options: --split-csv)"),
    (["evaluate", "run", "--split", "runs/x/split.csv"], "--split takes a split name"),
    (["evaluate", "run", "--split", "nope"], "is not a split name; use train, valid, test"),
    (["compare", "a", "b", "--ci-level", "95"], "between 0 and 1"),
    (["predict", "b", "x.png", "--out", "o", "--on-bad-file", "maybe"], "'maybe' is not one of 'skip', 'error'"),
])
def test_renamed_and_invalid_options_are_one_line(argv: list[str], expect: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert expect in err and len(err.splitlines()) == 1 and "Traceback" not in err, err


def test_split_names() -> None:
    assert SPLIT_NAMES == ("train", "valid", "test")


# --- a refused option leaves nothing behind ------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import torch

    from medattn.bundle import save_bundle
    from medattn.infer.testslides import synthetic_slide
    from medattn.models import create_model

    root = tmp_path_factory.mktemp("opts")
    torch.manual_seed(0)
    meta = {"task": "binary", "class_names": ["normal", "tumour"], "input_size": 32, "in_chans": 3,
            "mean": [0.5] * 3, "std": [0.25] * 3, "threshold": 0.5, "recipe": {"data": {"mpp": 2.0}}}
    bundle = save_bundle(create_model("patch_cnn_baseline", num_classes=1, width=0.125), meta, root / "bundle")
    imgs = root / "imgs"
    imgs.mkdir()
    for i in range(2):
        Image.fromarray(np.full((32, 32, 3), 80 * i, np.uint8)).save(imgs / f"{i}.png")
    (imgs / "empty.png").write_bytes(b"")  # a bad file: predict would list it in bad_files.csv
    slide, _ = synthetic_slide(root / "s.svs", grid=(2, 2), mpp=1.0)
    (root / "boxes.csv").write_text("Image Index,Finding Label,x,y,w,h\n")
    return {"bundle": bundle, "imgs": imgs, "slide": slide, "root": root}


REFUSED = [
    ("predict", ["--alpha", "2"], "--alpha"),
    ("predict", ["--alpha", "0"], "--alpha"),
    ("predict", ["--batch-size", "0"], "--batch-size"),
    ("predict", ["--max-megapixels", "0"], "--max-megapixels"),
    ("predict", ["--device", "nope"], "--device"),
    ("predict", ["--on-bad-file", "ignore"], "--on-bad-file"),
    ("slide", ["--min-tissue", "2"], "--min-tissue"),
    ("slide", ["--mpp", "-1"], "--mpp"),
    ("slide", ["--model-mpp", "0"], "--model-mpp"),
    ("slide", ["--block", "0"], "--block"),
    ("slide", ["--region", "1,2"], "--region"),
    ("slide", ["--tissue-method", "otsu"], "--tissue-method"),
    ("slide", ["--workers", "-1"], "--workers"),
    ("slide", ["--top-k", "0"], "--top-k"),
    ("explain", ["--batch-size", "0"], "--batch-size"),
    ("explain", ["--masks", "{root}/no-such-dir"], "--masks"),
    ("explain", ["--box-space", "-1"], "--box-space"),
    ("explain", ["--masks", "{imgs}", "--boxes", "{root}/boxes.csv"], "either --masks or --boxes"),
    ("evaluate", ["--split", "{root}/split.csv"], "--split-csv"),
    ("evaluate", ["--split-csv", "{root}/no-split.csv"], "--split-csv"),
    ("evaluate", ["--data", "{root}/no-data"], "--data"),
    ("train", ["--folds", "1"], "--folds"),
    ("train", ["--data", "{root}/no-data"], "--data"),
    ("train", ["--on-bad-file", "warn"], "--on-bad-file"),
    ("train", ["--resume", "--set", "trainer.max_epochs=1"], "--set applies to new runs"),
]


def _argv(verb: str, extra: list[str], inp: dict[str, Path], out: Path) -> list[str]:
    b, imgs, slide = str(inp["bundle"]), str(inp["imgs"]), str(inp["slide"])
    extra = [e.format(root=inp["root"], imgs=imgs) for e in extra]
    return {
        "predict": ["predict", b, imgs, "--out", str(out)],
        "slide": ["slide", b, slide, "--out", str(out), "--workers", "0"],
        "explain": ["explain", b, imgs, "--out", str(out)],
        "evaluate": ["evaluate", b, "--out", str(out)],
        "train": ["train", "pcam-baseline", "--smoke", "--out", str(out)],
    }[verb] + extra


@pytest.mark.parametrize(("verb", "extra", "named"), REFUSED, ids=[f"{v}{' '.join(e)}" for v, e, _ in REFUSED])
def test_refused_option_creates_no_output(verb: str, extra: list[str], named: str, inputs: dict[str, Path],
                                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(_argv(verb, extra, inputs, out)) == 2
    err = capsys.readouterr().err.strip()
    assert named in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not out.exists(), sorted(p.name for p in out.rglob("*"))


def test_predict_alpha_2_on_a_folder_with_a_bad_file_leaves_nothing(inputs: dict[str, Path], tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The case of issue 22.4: the folder holds an unreadable file, which used to be listed in
    D/bad_files.csv before --alpha was refused."""
    out = tmp_path / "D"
    assert main(["predict", str(inputs["bundle"]), str(inputs["imgs"]), "--alpha", "2", "--out", str(out)]) == 2
    assert "between 0 and 1" in capsys.readouterr().err and not out.exists()
    assert main(["predict", str(inputs["bundle"]), str(inputs["imgs"]), "--alpha", "0.2", "--out", str(out)]) == 0
    rows = (out / "bad_files.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith(str(inputs["imgs"] / "empty.png"))


def test_explain_on_bad_file_skip_and_error(inputs: dict[str, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    b, imgs = str(inputs["bundle"]), str(inputs["imgs"])
    assert main(["explain", b, imgs, "--out", str(tmp_path / "e1"), "--on-bad-file", "error"]) == 2
    err = capsys.readouterr().err.strip()
    assert "empty.png" in err and "--on-bad-file skip" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "e1").exists()
    assert main(["explain", b, imgs, "--out", str(tmp_path / "e2")]) == 0  # default: skip
    cap = capsys.readouterr()
    assert "2 image(s)" in cap.out and "skipped 1 unreadable file(s)" in cap.err
    assert "empty.png" in (tmp_path / "e2" / "bad_files.csv").read_text()


def test_train_resume_is_a_flag_with_the_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`medattn train --resume RUN` and `medattn train RECIPE --out RUN --resume` both name the run."""
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert f"--resume '{tmp_path}': no recipe.yaml" in capsys.readouterr().err
    assert main(["train", "pcam-baseline", "--out", str(tmp_path / "r"), "--resume"]) == 2
    assert f"--resume '{tmp_path / 'r'}'" in capsys.readouterr().err
    assert main(["train", "--resume"]) == 2
    assert "--resume needs the run" in capsys.readouterr().err


def test_slide_on_bad_file(inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.svs"
    junk.write_bytes(b"not a slide")
    argv = ["slide", str(inputs["bundle"]), str(junk), str(inputs["slide"]), "--workers", "0"]
    assert main([*argv, "--out", str(tmp_path / "err"), "--on-bad-file", "error"]) == 2
    assert "junk.svs" in capsys.readouterr().err
    assert not (tmp_path / "err" / "s").exists()  # stopped at the unreadable slide
    assert main([*argv, "--out", str(tmp_path / "skip")]) == 2  # default skip: the others go on, exit 2 at the end
    cap = capsys.readouterr()
    assert "junk.svs" in cap.err and "1 of 2 slides" in cap.err and (tmp_path / "skip" / "s" / "summary.json").is_file()


def test_audit_on_bad_file(inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    for c in ("a", "b"):
        (data / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((16, 16, 3), 30 * i + (100 if c == "b" else 0), np.uint8)).save(data / c / f"{i}.png")
    (data / "a" / "broken.png").write_bytes(b"")
    assert main(["audit", str(data), "--out", str(tmp_path / "a.json")]) == 0
    assert "BAD a/broken.png: empty (0 bytes)" in capsys.readouterr().out
    assert main(["audit", str(data), "--out", str(tmp_path / "b.json"), "--on-bad-file", "error"]) == 2
    err = capsys.readouterr().err.strip()
    assert "a/broken.png" in err and "empty (0 bytes)" in err and len(err.splitlines()) == 1
    assert (tmp_path / "b.json").is_file()  # the report is kept
