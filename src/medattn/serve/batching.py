"""Micro-batching: concurrent requests share one forward pass, off the event loop.

Requests put preprocessed tensors on a bounded queue and await a future; one worker thread
takes the first waiting item, gathers more for at most ``max_wait_ms`` (or until ``max_batch``),
runs the model once and hands each caller its row. Throughput therefore rises with concurrency
while a lone request waits at most ``max_wait_ms`` extra.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["MicroBatcher", "BatcherBusy", "BatchStats"]


class BatcherBusy(Exception):
    """The queue is full or the batcher is stopped: the caller should answer 503 and retry later."""


@dataclass
class BatchStats:
    """Counters of a running batcher (for ``/readyz`` and benchmarks)."""

    batches: int = 0
    items: int = 0
    errors: int = 0

    @property
    def mean_batch(self) -> float:
        return self.items / self.batches if self.batches else 0.0


class _Job:
    __slots__ = ("x", "fut", "loop")

    def __init__(self, x: torch.Tensor, fut: asyncio.Future[Any], loop: asyncio.AbstractEventLoop) -> None:
        self.x, self.fut, self.loop = x, fut, loop


def _deliver(fut: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if fut.done():  # the caller gave up (timeout, disconnect)
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(value)


class MicroBatcher:
    """Batch single-image tensors into one call of ``fn`` (``B×C×H×W`` → per-row results).

    Args:
        fn: maps a stacked batch to a sequence with one result per row (an array whose first axis
            is the batch, or a list).
        max_batch: largest batch.
        max_wait_ms: how long the first item of a batch waits for company.
        max_queue: queued items beyond which :meth:`submit` raises :class:`BatcherBusy`.
    """

    def __init__(self, fn: Callable[[torch.Tensor], Sequence[Any]], *, max_batch: int = 16,
                 max_wait_ms: float = 5.0, max_queue: int = 1024) -> None:
        self.fn, self.max_batch, self.max_wait = fn, max(1, int(max_batch)), max(0.0, max_wait_ms) / 1000
        self._q: queue.Queue[_Job | None] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.stats = BatchStats()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> MicroBatcher:
        """Start the worker thread (idempotent)."""
        with self._lock:
            if not self.running:
                self._thread = threading.Thread(target=self._run, name="medattn-batcher", daemon=True)
                self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Finish queued work and stop the worker."""
        with self._lock:
            t, self._thread = self._thread, None
        if t is not None and t.is_alive():
            self._q.put(None)
            t.join(timeout)

    async def submit(self, x: torch.Tensor) -> Any:
        """Result row for one ``C×H×W`` tensor (awaits the batch it joins)."""
        if not self.running:
            raise BatcherBusy("the inference worker is not running")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        try:
            self._q.put_nowait(_Job(x, fut, loop))
        except queue.Full:
            raise BatcherBusy("too many requests are queued; retry shortly") from None
        return await fut

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        jobs, stop = [first], False
        deadline = time.monotonic() + self.max_wait
        while len(jobs) < self.max_batch:
            left = deadline - time.monotonic()
            try:
                job = self._q.get(timeout=left) if left > 0 else self._q.get_nowait()
            except queue.Empty:
                break
            if job is None:
                stop = True
                break
            jobs.append(job)
        return jobs, stop

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._q.get()
            if first is None:
                break
            jobs, stop = self._gather(first)
            live = [j for j in jobs if not j.fut.done()]
            if not live:
                continue
            try:
                out = self.fn(torch.stack([j.x for j in live]))
                results: list[tuple[Any, BaseException | None]] = [(out[i], None) for i in range(len(live))]
                self.stats.batches += 1
                self.stats.items += len(live)
            except BaseException as exc:  # noqa: BLE001 - reported to every caller of the batch
                self.stats.errors += 1
                results = [(None, exc)] * len(live)
            for job, (val, err) in zip(live, results, strict=True):
                try:
                    job.loop.call_soon_threadsafe(_deliver, job.fut, val, err)
                except RuntimeError:  # the caller's loop has closed
                    pass
