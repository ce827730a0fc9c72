"""Progress of long phases outside the training loop (evaluation, trust fitting, prediction).

Library code marks its work and never decides whether or where it is shown:

- :func:`step` names a phase of a command (``evaluating test (914 items, 8-view TTA)``): a line
  when it starts and ``… done in 12.3 s`` when it ends;
- :func:`track` counts the items of a loop inside it (batches, bootstrap resamples, images): a
  live bar on a terminal, and off a terminal (SLURM logs, pipes) a line every ``every_s`` seconds
  with the count, elapsed time and ETA, so a long phase is never silent.

Both are silent unless a command turned reporting on with :func:`reporting` (``medattn train``
when ``trainer.progress`` is true, ``medattn evaluate``, ``medattn predict``).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TextIO

__all__ = ["reporting", "step", "track", "Progress", "EVERY_S"]

EVERY_S = 10.0
"""Off a terminal, a running phase prints a line at most this often (seconds)."""


@dataclass
class _Reporter:
    stream: TextIO | None
    tty: bool
    every_s: float
    clock: Callable[[], float] = field(default=time.perf_counter)
    depth: int = 0

    def out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stdout

    def line(self, text: str) -> None:
        print(text, file=self.out(), flush=True)


_CURRENT: ContextVar[_Reporter | None] = ContextVar("medattn_progress", default=None)


def _is_tty(stream: TextIO | None) -> bool:
    try:
        return bool((stream if stream is not None else sys.stdout).isatty())
    except (AttributeError, ValueError):
        return False


@contextmanager
def reporting(enabled: bool = True, *, stream: TextIO | None = None, tty: bool | None = None,
              every_s: float | None = None, clock: Callable[[], float] | None = None) -> Iterator[None]:
    """Show the :func:`step` and :func:`track` phases run inside the block.

    Args:
        enabled: ``False`` keeps them silent (e.g. ``trainer.progress: false``).
        stream: where lines go (default: stdout at the time of printing).
        tty: draw bars (default: whether ``stream`` is a terminal).
        every_s: off a terminal, seconds between the lines of a running phase (default :data:`EVERY_S`).
        clock: time source (tests).
    """
    rep = _Reporter(stream, _is_tty(stream) if tty is None else tty, EVERY_S if every_s is None else every_s,
                    clock or time.perf_counter) if enabled else None
    token = _CURRENT.set(rep)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def _secs(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    return f"{s:.1f} s" if s < 60 else f"{int(s // 60)} min {int(s % 60):02d} s"


@contextmanager
def step(label: str) -> Iterator[None]:
    """One phase of a command: ``label …`` when it starts, ``label: done in T`` when it ends."""
    rep = _CURRENT.get()
    if rep is None:
        yield
        return
    t0 = rep.clock()
    rep.line(f"{label} …")
    rep.depth += 1
    try:
        yield
    finally:
        rep.depth -= 1
    rep.line(f"{label}: done in {_secs(rep.clock() - t0)}")


class Progress:
    """The counter :func:`track` yields; call it with the items just finished (``advance(n)``),
    or with ``(done, total)`` as the prediction loops report themselves."""

    def __init__(self, label: str, total: int | None, rep: _Reporter | None) -> None:
        self.label, self.total, self.rep = label, total, rep
        self.done = 0
        self.t0 = rep.clock() if rep else 0.0
        self.last = self.t0
        self._bar: Any = None
        self._task: Any = None
        if rep is not None and rep.tty:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                     console=Console(file=rep.out()), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(label, total=total)

    def __call__(self, n: int = 1, total: int | None = None) -> None:
        if total is not None:  # (done, total) form
            self.total, self.done = total, n
        else:
            self.done += n
        if self.rep is None:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, total=self.total)
            return
        now = self.rep.clock()
        if now - self.last >= self.rep.every_s:
            self.last = now
            self.rep.line(self.status(now))

    def status(self, now: float) -> str:
        """``label: 300/914 (33%), 10.0 s elapsed, ETA 20.5 s``."""
        el = now - self.t0
        if self.total:
            eta = el / self.done * (self.total - self.done) if self.done else float("nan")
            return (f"{self.label}: {self.done}/{self.total} ({100 * self.done / self.total:.0f}%), "
                    f"{_secs(el)} elapsed, ETA {_secs(eta)}")
        return f"{self.label}: {self.done} done, {_secs(el)} elapsed"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif self.rep is not None and self.last > self.t0:  # it printed while running: say it ended
            self.rep.line(f"{self.label}: done in {_secs(self.rep.clock() - self.t0)}")


@contextmanager
def track(label: str, total: int | None = None) -> Iterator[Progress]:
    """Count the items of a loop: a bar on a terminal, a line every ``every_s`` seconds off one."""
    p = Progress(label, total, _CURRENT.get())
    try:
        yield p
    finally:
        p.close()
