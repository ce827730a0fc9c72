"""A verb whose optional extra is not installed says which extra in one line, exit 2 (issue 22.3).

A missing module is simulated with ``sys.modules[name] = None`` (what Python does for a module
that cannot be imported), in process and, for the real console script, in a subprocess.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from medattn.cli import main
from medattn.extras import missing_modules, require_extra


@pytest.mark.parametrize(("argv", "hidden", "expect"), [
    (["serve", "some-bundle"], ["uvicorn"],
     "medattn serve needs the 'serve' extra (uvicorn is not installed): pip install 'medattn[serve]'"),
    (["serve", "some-bundle", "--no-ui"], ["fastapi"], "needs the 'serve' extra (fastapi is not installed)"),
    (["serve", "some-bundle"], ["gradio"], "needs the 'serve' extra (gradio is not installed)"),
    (["search", "pcam-baseline", "--smoke"], ["optuna"],
     "medattn search needs the 'search' extra (optuna is not installed): pip install 'medattn[search]'"),
    (["export", "some-bundle"], ["onnxruntime"],
     "medattn export --to onnx needs the 'export' extra (onnxruntime is not installed): pip install 'medattn[export]'"),
    (["slide", "some-bundle", "s.svs", "--out", "o"], ["openslide", "tiffslide"],
     "medattn slide needs the 'slide' extra (openslide or tiffslide is not installed): pip install 'medattn[slide]'"),
    (["slide", "some-bundle", "s.svs", "--out", "o"], ["shapely"], "(shapely is not installed)"),
])
def test_missing_extra_is_one_line(argv: list[str], hidden: list[str], expect: str, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    for mod in hidden:
        monkeypatch.setitem(sys.modules, mod, None)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert expect in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not any(tmp_path.iterdir())  # refused before any output


def test_export_torchscript_needs_no_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert missing_modules(["onnxruntime"]) == ["onnxruntime"]
    assert missing_modules([("onnxruntime", "json")]) == []  # alternatives: one suffices
    require_extra("export", ["json"], "x")  # present: no error


def test_segmentation_predict_needs_shapely(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import medattn.bundle

    class Seg:
        task = "segmentation"

    monkeypatch.setattr(medattn.bundle, "load_bundle", lambda *a, **k: Seg())
    monkeypatch.setitem(sys.modules, "shapely", None)
    assert main(["predict", "b", "x.png", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs the 'slide' extra (shapely is not installed): pip install 'medattn[slide]'" in err
    assert not (tmp_path / "o").exists()


def test_console_script_without_uvicorn_subprocess() -> None:
    code = ("import sys; sys.modules['uvicorn'] = None; from medattn.cli import run; "
            "sys.argv = ['medattn', 'serve', 'b']; run()")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "error: medattn serve needs the 'serve' extra (uvicorn is not installed): pip install 'medattn[serve]'"]
