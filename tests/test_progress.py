"""Phase progress: a line per phase, periodic lines off a terminal, a bar on one, silent when off."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from medattn.metrics.bootstrap import bootstrap_ci
from medattn.progress import reporting, step, track


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_off_a_terminal_a_line_per_phase_and_every_ten_seconds() -> None:
    buf, clock = io.StringIO(), _Clock()
    with reporting(stream=buf, tty=False, clock=clock):
        with step("final evaluation on the test split"):
            with track("predicting 100 items", 100) as tick:
                for _ in range(100):
                    clock.t += 0.45  # 45 s in all: lines at 10, 20, 30, 40 s
                    tick()
            with track("quick", 5) as tick:  # under 10 s: no line
                tick(5)
    lines = buf.getvalue().splitlines()
    assert lines[0] == "final evaluation on the test split …"
    assert lines[1].startswith("predicting 100 items: 23/100 (23%), 10.3 s elapsed, ETA ")
    assert len([ln for ln in lines if ln.startswith("predicting 100 items: ") and "elapsed" in ln]) == 4
    assert lines[-2] == "predicting 100 items: done in 45.0 s"
    assert lines[-1] == "final evaluation on the test split: done in 45.0 s"
    assert not any(ln.startswith("quick") for ln in lines)


def test_silent_unless_a_command_reports() -> None:
    buf = io.StringIO()
    with reporting(False, stream=buf), step("x"), track("y", 3) as tick:
        tick(3)
    assert buf.getvalue() == ""
    with step("x"), track("y", 3) as tick:  # no reporting at all (library use)
        tick(3)


def test_terminal_gets_a_bar() -> None:
    buf = io.StringIO()
    with reporting(stream=buf, tty=True), track("bootstrap CIs (50 resamples)", 50) as tick:
        assert tick._bar is not None
        for _ in range(50):
            tick()
    assert tick.done == 50


def test_bootstrap_reports_its_resamples() -> None:
    buf, clock = io.StringIO(), _Clock()

    def fn(i: np.ndarray) -> dict[str, float]:
        clock.t += 1.0
        return {"mean": float(np.mean(i))}

    with reporting(stream=buf, tty=False, clock=clock):
        bootstrap_ci(fn, 20, n_boot=30)
    assert "bootstrap CIs (30 resamples): 10/30 (33%)" in buf.getvalue()


def test_train_and_evaluate_print_their_phases(tmp_path: Path, capsys) -> None:
    from medattn.cli import main

    assert main(["train", "pcam-baseline", "--smoke", "--out", str(tmp_path / "run"),
                 "--set", "evaluation.n_cams=1", "--set", "trainer.progress=true"]) == 0
    out = capsys.readouterr().out
    for phase in ("final evaluation on the test split (", "bundle: weights, input contract, out-of-distribution model",
                  "report.html and Grad-CAMs"):
        assert f"{phase}" in out and out.count(phase) == 2, (phase, out)  # start line and done line
    assert out.index("epoch 1/") < out.index("final evaluation")
    assert main(["evaluate", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "evaluation on the test split (" in out and "reading '" in out and ": done in " in out
