"""Usage errors are one line with a hint and exit 2 (never a traceback); ``--version``;
malformed values under ``--smoke`` and in ``bundle.json`` are one-line errors too."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from medattn.cli import main


@pytest.mark.parametrize(("argv", "expect"), [
    (["trian"], "No such command 'trian'. Did you mean 'train'? (see `medattn --help`)"),
    (["synth"], "Missing argument 'kind'. (see `medattn synth --help`)"),
    (["demo", "--epochs", "x"], "Invalid value for '--epochs'"),
    (["train", "--bogus"], "No such option: --bogus"),
    (["recipes", "show"], "(see `medattn recipes show --help`)"),
    (["--debug"], "Missing command."),
])
def test_usage_errors_one_line_exit_2(argv: list[str], expect: str, capsys) -> None:
    assert main(argv) == 2
    cap = capsys.readouterr()
    err = cap.err.strip()
    assert expect in err and err.startswith("error: ")
    assert len(err.splitlines()) == 1 and "Traceback" not in cap.out + cap.err


def test_bare_medattn_prints_help_exit_2(capsys) -> None:
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "train" in out and "recipes" in out and "Traceback" not in out


def test_version(capsys) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"medattn {version('medattn')}"


def test_console_script_usage_error_subprocess() -> None:
    """The real entry point (``medattn.cli:run``): exit code 2 and a single stderr line."""
    code = "import sys; from medattn.cli import run; sys.argv = ['medattn', 'trian']; run()"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [
        "error: No such command 'trian'. Did you mean 'train'? (see `medattn --help`)"]


def test_smoke_with_malformed_recipe_value_is_one_line(tmp_path: Path, capsys) -> None:
    from medattn.engine.config import RECIPE_DIR

    raw = yaml.safe_load((RECIPE_DIR / "pcam-attention.yaml").read_text())
    raw["data"]["image_size"] = "ninety"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    assert main(["train", str(bad), "--smoke", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "field 'data.image_size'" in err and "'ninety'" in err and len(err.splitlines()) == 1
    assert main(["train", "pcam-attention", "--smoke", "--out", str(tmp_path / "run"),
                 "--set", "data.image_size=ninety"]) == 2
    assert "field 'data.image_size'" in capsys.readouterr().err


@pytest.mark.parametrize(("field", "value"), [
    ("input_size", "big"), ("input_size", [32]), ("in_chans", "3"), ("mean", "0.5"),
    ("class_names", []), ("architecture", {"kwargs": {}}), ("threshold", "high"),
])
def test_malformed_bundle_json_field_is_one_line(tmp_path: Path, capsys, field: str, value: object) -> None:
    import torch

    from medattn.bundle import save_bundle
    from medattn.models import create_model

    torch.manual_seed(0)
    meta = {"task": "binary", "class_names": ["a", "b"], "input_size": 32, "in_chans": 3,
            "mean": [0.5] * 3, "std": [0.25] * 3, "threshold": 0.5}
    b = save_bundle(create_model("patch_cnn_baseline", width=0.125), meta, tmp_path / "bundle")
    doc = json.loads((b / "bundle.json").read_text())
    doc[field] = value
    (b / "bundle.json").write_text(json.dumps(doc))
    assert main(["export", str(b), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"field '{field}'" in err and "bundle.json" in err and len(err.splitlines()) == 1
