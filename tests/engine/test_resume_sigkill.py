"""``medattn train`` with 2 data-loading workers killed with SIGKILL, then ``--resume``: the final
weights, metrics and history equal an uninterrupted run's, whether the last checkpoint is the
end of an epoch or a mid-epoch one (``trainer.checkpoint_every_n_steps``)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.engine._helpers import REPO, cli_cmd, env, metrics, run_cli

pytestmark = pytest.mark.slow

# pcam-attention as in the report (2 workers, deterministic, seed 7, 3 epochs), shrunk:
# 80 training items in batches of 8 = 10 batches per epoch.
SETS = ["--set", "trainer.max_epochs=3", "--set", "trainer.limit_train_batches=null", "--set", "data.max_items=80",
        "--set", "data.num_workers=2", "--set", "trainer.deterministic=true", "--set", "trainer.seed=7",
        "--set", "trainer.batch_size=8", "--set", "model.args.width=0.25", "--set", "evaluation.n_boot=20",
        "--set", "evaluation.n_cams=0", "--set", "scheduler.patience=0"]
BATCHES = 10


def _train(out: Path, data: Path, *extra: str) -> list[str]:
    return ["train", "pcam-attention", "--smoke", "--data", str(data), "--out", str(out), *SETS, *extra]


def _ckpt_state(path: Path) -> tuple[int, int]:
    """(global step, batches the loader had given in its epoch) of a checkpoint."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    return int(ck["global_step"]), int(ck["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["batches"])


def _weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run / "bundle" / "model.safetensors"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, synth_pcam: Path) -> Path:
    ref = tmp_path_factory.mktemp("ref") / "run"
    res = run_cli(*_train(ref, synth_pcam))
    assert res.returncode == 0, res.stderr[-2000:]
    return ref


def _kill_when(run: Path, cmd: list[str], ready) -> None:
    proc = subprocess.Popen(cli_cmd(*cmd), env=env(), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if last.is_file():
                try:
                    if ready(*_ckpt_state(last)):
                        break
                except (RuntimeError, EOFError, KeyError, OSError):  # replaced while being read
                    pass
            time.sleep(0.02)
        assert proc.poll() is None, "training ended before it could be interrupted"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the run and its loader workers
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "metrics.json").exists()


@pytest.mark.parametrize("where", ["epoch_end", "mid_epoch"])
def test_sigkill_then_resume_matches_uninterrupted(where: str, tmp_path: Path, synth_pcam: Path,
                                                   reference: Path) -> None:
    run = tmp_path / "killed"
    if where == "epoch_end":  # after epoch 1's checkpoint, while epoch 2 is running
        _kill_when(run, _train(run, synth_pcam), lambda step, _: step >= 2 * BATCHES)
        step, taken = _ckpt_state(run / "checkpoints" / "last.ckpt")
        assert step == 2 * BATCHES and taken == BATCHES
    else:  # right after the first mid-epoch checkpoint (step 2 of epoch 0, or a few steps later)
        _kill_when(run, _train(run, synth_pcam, "--set", "trainer.checkpoint_every_n_steps=2"),
                   lambda step, _: step >= 2)
        step, taken = _ckpt_state(run / "checkpoints" / "last.ckpt")
        assert 0 < taken < BATCHES, (step, taken)

    res = run_cli("train", "--resume", str(run))
    assert res.returncode == 0, res.stderr[-2000:]
    a, b = metrics(reference), metrics(run)
    assert a.keys() == b.keys()
    np.testing.assert_allclose([b[k] for k in a], [a[k] for k in a], rtol=0, atol=1e-6)
    wa, wb = _weights(reference), _weights(run)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=0, atol=1e-6, msg=k)
    assert (reference / "training_history.csv").read_text() == (run / "training_history.csv").read_text()
    # the final (not only the best) weights, optimiser and scheduler state of the last epoch
    la = torch.load(reference / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    lb = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert la["global_step"] == lb["global_step"] == 3 * BATCHES
    for k, v in la["state_dict"].items():
        torch.testing.assert_close(lb["state_dict"][k], v, rtol=0, atol=1e-6, msg=k)
    assert la["lr_schedulers"] == lb["lr_schedulers"]
