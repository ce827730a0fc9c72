"""2-process DDP on CPU (gloo), Optuna search on validation only, and `medattn evaluate`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medattn.cli import main
from tests.engine._helpers import metrics, run_cli


def test_ddp_two_cpu_processes(tmp_path: Path, synth_pcam: Path) -> None:
    out = tmp_path / "ddp"
    res = run_cli("train", "pcam-baseline", "--smoke", "--data", str(synth_pcam), "--out", str(out),
                  "--set", "trainer.devices=2", "--set", "trainer.strategy=ddp", "--set", "trainer.accelerator=cpu",
                  "--set", "trainer.record_seen=true", "--set", "trainer.max_epochs=1")
    assert res.returncode == 0, res.stderr[-3000:]
    r0 = json.loads((out / "seen" / "rank0.json").read_text())
    r1 = json.loads((out / "seen" / "rank1.json").read_text())
    assert r0["world_size"] == r1["world_size"] == 2
    a, b = set(r0["epochs"]["0"]), set(r1["epochs"]["0"])
    assert a and b and not (a & b), "both ranks trained on the same items"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert (out / "metrics.json").is_file()


def test_search_uses_validation_only(tmp_path: Path, synth_pcam: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "search"
    assert main(["search", "pcam-baseline", "--trials", "2", "--smoke", "--data", str(synth_pcam),
                 "--out", str(out)]) == 0, capsys.readouterr().err
    doc = json.loads((out / "search.json").read_text())
    assert doc["split"] == "valid" and doc["n_trials"] == 2 and doc["metric"] == "val_auroc"
    assert len((out / "trials.csv").read_text().splitlines()) == 3
    assert (out / "best_recipe.yaml").is_file()
    assert not list(out.rglob("metrics.json")) and not list(out.rglob("test_predictions.csv"))


def test_evaluate_run_and_bundle(tmp_path: Path, synth_pcam: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", "pcam-baseline", "--smoke", "--data", str(synth_pcam), "--out", str(run),
                 "--set", "trainer.max_epochs=1"]) == 0
    assert main(["evaluate", str(run)]) == 0, capsys.readouterr().err
    assert metrics(run / "eval_test") == metrics(run)
    assert main(["evaluate", str(run / "bundle"), "--data", str(synth_pcam), "--split", "valid",
                 "--out", str(tmp_path / "ev")]) == 0, capsys.readouterr().err
    assert (tmp_path / "ev" / "metrics.json").is_file()
    # a bundle alone, told the run's split, reproduces the run's test metrics
    assert main(["evaluate", str(run / "bundle"), "--data", str(synth_pcam), "--split-csv", str(run / "split.csv"),
                 "--out", str(tmp_path / "ev2")]) == 0, capsys.readouterr().err
    assert metrics(tmp_path / "ev2") == metrics(run)
    assert main(["evaluate", str(run / "bundle"), "--data", str(synth_pcam), "--split-csv",
                 str(tmp_path / "missing.csv")]) == 2
    err = capsys.readouterr().err
    assert "--split-csv" in err and "does not exist" in err
    assert main(["evaluate", str(tmp_path / "nothing")]) == 2
