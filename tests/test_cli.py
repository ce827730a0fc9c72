from __future__ import annotations

from medattn.cli import main


def test_unknown_synth_kind_is_one_line_exit_2(capsys, tmp_path):
    assert main(["synth", "nope", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown synthetic kind 'nope'") and "\n" not in err


def test_demo_rejects_bad_size(capsys, tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--n-train", "0"]) == 2
    assert "--n-train must be >= 1" in capsys.readouterr().err


def test_demo_unwritable_output(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["demo", "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err
    assert "cannot create output folder" in err and str(blocker) in err
