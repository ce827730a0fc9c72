"""Training and evaluation DataLoaders whose every random draw is a pure function of the recipe seed.

Exact resume needs three things from the data side, none of which may depend on process-global
random state, worker processes or how many batches the loader had prefetched when the run died:

- **order**: :class:`EpochShuffleSampler` draws the permutation of epoch ``e`` from
  ``(seed, e)`` and, under DDP, gives rank ``r`` every ``world``-th item of it;
- **augmentation**: :class:`SeededItems` seeds torch, numpy and ``random`` from
  ``(seed, epoch, item index)`` just before an item's transform runs (and restores the caller's
  generators afterwards), so an item looks the same with 0, 2 or 8 workers, before and after a
  resume;
- **position**: :class:`ResumableLoader` tells Lightning (``state_dict``/``load_state_dict``,
  stored in every checkpoint) which epoch it was in and how many batches the training loop had
  taken; on resume the sampler starts after them. The loader creates its worker iterator only when
  the first batch is requested, after Lightning has called ``set_epoch``: an iterator created
  earlier would prefetch indices of the wrong epoch.

Both loaders carry their own ``torch.Generator`` for the workers' base seed, so creating an
iterator never advances the global torch RNG that dropout uses (it did before: a resumed run
created its iterators at other moments than an uninterrupted one and its dropout masks drifted).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

__all__ = ["EpochShuffleSampler", "SeededItems", "ResumableLoader", "item_seed", "seeded",
           "class_balanced_weights", "make_train_loader", "make_eval_loader"]


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed that depends only on ``(seed, epoch, index)`` (BLAKE2b of the three)."""
    raw = hashlib.blake2b(f"{int(seed)}:{int(epoch)}:{int(index)}".encode(), digest_size=8).digest()
    return int.from_bytes(raw, "little") >> 1


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch (CPU), numpy and ``random`` for the block, then put back the caller's states."""
    t, n, p = torch.get_rng_state(), np.random.get_state(), random.getstate()
    torch.manual_seed(seed)
    np.random.seed(seed & 0xFFFF_FFFF)
    random.seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(t)
        np.random.set_state(n)
        random.setstate(p)


def _world() -> tuple[int, int]:
    """``(world size, rank)`` of the initialised process group, ``(1, 0)`` without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class EpochShuffleSampler(DistributedSampler):
    """Permutation of ``n`` items drawn from ``(seed, epoch)``, sharded across DDP ranks, yielding
    ``(epoch, index)`` keys for :class:`SeededItems`.

    It subclasses :class:`~torch.utils.data.DistributedSampler` so that Lightning uses it as is
    under DDP instead of wrapping it; the world size and rank are read from the process group when
    the sampler is iterated (it is built before Lightning starts the group). Like
    ``DistributedSampler(drop_last=False)``, the permutation is padded with its first items to a
    multiple of the world size, so every rank runs the same number of batches.

    With ``weights`` (one per item) an epoch is ``n`` draws with replacement, item ``i`` drawn with
    probability ``weights[i] / sum(weights)`` (``data.sampler: balanced``), still a pure function
    of ``(seed, epoch)``.

    Args:
        n: dataset length.
        seed: recipe seed.
        num_replicas: world size (default: from the process group at iteration time).
        rank: this process's rank (default: from the process group).
    """

    def __init__(self, n: int, seed: int = 0, *, num_replicas: int | None = None,
                 rank: int | None = None, weights: Any = None) -> None:  # no super().__init__: needs a process group
        self.n = int(n)
        self.weights = None if weights is None else torch.as_tensor(np.asarray(weights, dtype=np.float64))
        if self.weights is not None and (len(self.weights) != self.n or not bool((self.weights >= 0).all())
                                         or float(self.weights.sum()) <= 0):
            raise ValueError(f"sampler weights: need {self.n} non-negative weights with a positive sum")
        self.seed = int(seed)
        self.epoch = 0
        self.shuffle = True
        self.drop_last = False
        self._replicas = num_replicas
        self._rank = rank
        self._start = 0
        self._start_epoch: int | None = None

    @property
    def num_replicas(self) -> int:  # type: ignore[override]
        return self._replicas if self._replicas is not None else _world()[0]

    @property
    def rank(self) -> int:  # type: ignore[override]
        return self._rank if self._rank is not None else _world()[1]

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (Lightning calls this before each epoch); a pending resume position
        of another epoch is dropped."""
        self.epoch = int(epoch)
        if self._start_epoch is not None and self._start_epoch != self.epoch:
            self._start, self._start_epoch = 0, None

    def resume_at(self, epoch: int, start: int) -> None:
        """Make the next iteration over ``epoch`` begin at position ``start`` of this rank's share."""
        self.epoch = int(epoch)
        self._start, self._start_epoch = max(0, int(start)), int(epoch)

    def indices(self) -> list[int]:
        """This rank's dataset indices of the current epoch, in order (without the resume skip)."""
        g = torch.Generator()
        g.manual_seed(self.seed * 100_003 + self.epoch)
        if self.weights is None:
            order = torch.randperm(self.n, generator=g).tolist()
        else:  # n draws with replacement, item i with probability weights[i] / sum
            order = torch.multinomial(self.weights, self.n, replacement=True, generator=g).tolist()
        world, rank = self.num_replicas, self.rank
        if world > 1:
            pad = (-len(order)) % world
            order = (order * (1 + pad // max(1, len(order)) + 1))[: len(order) + pad]
            order = order[rank::world]
        return order

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        order, epoch = self.indices(), self.epoch
        start = self._start if self._start_epoch == epoch else 0
        self._start, self._start_epoch = 0, None  # one-shot
        return iter([(epoch, i) for i in order[start:]])

    def __len__(self) -> int:
        world = self.num_replicas
        return -(-self.n // world) if world > 1 else self.n


class SeededItems(Dataset):
    """``base`` whose items are read under :func:`seeded` ``(item_seed(seed, epoch, index))``.

    Keys are ``(epoch, index)`` pairs (from :class:`EpochShuffleSampler`) or plain indices (epoch
    0). Other attributes (``labels()``, ``bad_files``, …) are the base dataset's.
    """

    def __init__(self, base: Dataset, seed: int) -> None:
        self.base = base
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        with seeded(item_seed(self.seed, epoch, index)):
            return self.base[int(index)]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("base", "seed"):  # never forward __getitems__ & co.
            raise AttributeError(name)
        return getattr(self.base, name)


class ResumableLoader(DataLoader):
    """Training DataLoader that records its position for Lightning's checkpoints.

    ``state_dict()`` is ``{"epoch", "batches", "batch_size"}``: the batches the training loop has
    taken from the current pass (not the ones workers prefetched). ``load_state_dict`` makes the
    sampler skip exactly those items when the same epoch is iterated again; the checkpoint of a
    finished epoch resumes at the next epoch as usual.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._taken = 0

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        return self._lazy()

    def _lazy(self) -> Iterator[Any]:
        # Runs at the first next(): after Lightning's set_epoch, unlike DataLoader.__iter__.
        sampler = self.sampler
        self._taken = sampler._start if isinstance(sampler, EpochShuffleSampler) \
            and sampler._start_epoch == sampler.epoch else 0
        self._taken //= max(1, self.batch_size or 1)
        for batch in super().__iter__():
            self._taken += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """Epoch and batches taken so far (Lightning stores it under ``loops.fit_loop``)."""
        return {"epoch": int(getattr(self.sampler, "epoch", 0)), "batches": int(self._taken),
                "batch_size": int(self.batch_size or 1)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume in ``state["epoch"]`` after ``state["batches"]`` batches."""
        if isinstance(self.sampler, EpochShuffleSampler):
            self.sampler.resume_at(int(state.get("epoch", 0)),
                                   int(state.get("batches", 0)) * int(state.get("batch_size", self.batch_size or 1)))


def class_balanced_weights(labels: Any, n: int) -> np.ndarray:
    """One weight per item, ``1 / count(item's class)``, so every class is drawn equally often.

    ``labels`` are integer class labels of the base dataset; a dataset listing them ``r`` times
    (``data.train_repeats``) has ``n = r × len(labels)`` items, item ``i`` being ``labels[i % len]``.
    """
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) == 0 or n % len(y):
        raise ValueError(f"class-balanced sampling needs one integer label per item (got labels of shape "
                         f"{y.shape} for {n} items)")
    y = np.tile(y.astype(np.int64), n // len(y))
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse]


def make_train_loader(ds: Dataset, batch_size: int, num_workers: int, seed: int, distributed: bool = False,
                      drop_last: bool = False, balanced: bool = False) -> ResumableLoader:
    """Shuffling, resumable loader over :class:`SeededItems` ``(ds, seed)``.

    The order depends on ``(seed, epoch)``, each item's augmentation on ``(seed, epoch, index)``;
    under DDP (``distributed``, or any initialised process group) the sampler shards by rank.
    Results do not depend on ``num_workers``. ``balanced``: each epoch draws ``len(ds)`` items with
    replacement, every class equally likely (:func:`class_balanced_weights` of ``ds.labels()``).
    """
    del distributed  # the sampler reads the world size from the process group itself
    g = torch.Generator()
    g.manual_seed(int(seed))
    weights = class_balanced_weights(ds.labels(), len(ds)) if balanced else None  # type: ignore[attr-defined, arg-type]
    sampler = EpochShuffleSampler(len(ds), seed, weights=weights)  # type: ignore[arg-type]
    return ResumableLoader(SeededItems(ds, seed), batch_size=batch_size, sampler=sampler,  # type: ignore[arg-type]
                           num_workers=num_workers, persistent_workers=num_workers > 0, drop_last=drop_last,
                           generator=g)


def make_eval_loader(ds: Dataset, batch_size: int, num_workers: int) -> DataLoader:
    """Sequential loader for validation/test (its own generator: creating it leaves the global
    RNG untouched)."""
    g = torch.Generator()
    g.manual_seed(0)
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      persistent_workers=num_workers > 0, generator=g)
