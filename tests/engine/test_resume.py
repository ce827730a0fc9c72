"""Kill a training subprocess with SIGKILL mid-epoch, resume it, compare with an uninterrupted run."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import numpy as np

from tests.engine._helpers import REPO, cli_cmd, env, metrics, run_cli

# Deterministic CPU run: 4 epochs of 6 batches, plateau scheduler, dropout and augmentation on.
SETS = ["--set", "trainer.max_epochs=4", "--set", "trainer.limit_train_batches=null", "--set", "data.max_items=48",
        "--set", "trainer.deterministic=true", "--set", "evaluation.n_boot=50", "--set", "model.args.width=0.25"]


def _train(out: Path, data: Path) -> list[str]:
    return ["train", "pcam-baseline", "--smoke", "--data", str(data), "--out", str(out), *SETS]


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path: Path, synth_pcam: Path) -> None:
    ref = tmp_path / "ref"
    res = run_cli(*_train(ref, synth_pcam))
    assert res.returncode == 0, res.stderr[-2000:]

    run = tmp_path / "killed"
    proc = subprocess.Popen(cli_cmd(*_train(run, synth_pcam)), env=env(), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not last.is_file():
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before it could be interrupted"
    time.sleep(0.3)  # into the next epoch's batches
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "metrics.json").exists(), "the run was not interrupted before its end"
    assert len((run / "training_history.csv").read_text().splitlines()) - 1 < 4

    res = run_cli("train", "--resume", str(run))
    assert res.returncode == 0, res.stderr[-2000:]
    history = (run / "training_history.csv").read_text().splitlines()
    assert len(history) == 1 + 4, history
    a, b = metrics(ref), metrics(run)
    assert a.keys() == b.keys()
    np.testing.assert_allclose([b[k] for k in a], [a[k] for k in a], rtol=0, atol=1e-6)
    assert (ref / "training_history.csv").read_text() == (run / "training_history.csv").read_text()


def test_resume_of_a_non_run_is_a_one_line_error(tmp_path: Path) -> None:
    res = run_cli("train", "--resume", str(tmp_path))
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "recipe.yaml" in res.stderr


def test_out_holding_a_run_refuses_without_resume(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    res = run_cli("train", "pcam-baseline", "--smoke", "--out", str(tmp_path))
    assert res.returncode == 2 and "--resume" in res.stderr
