"""Exact resume with worker processes: the loader's order, augmentation and position, and a
Lightning run interrupted at the end of an epoch or mid-epoch then resumed (in-process, fast).

The SIGKILL versions (a real ``medattn train`` subprocess killed and resumed) are in
``test_resume_sigkill.py``.
"""

from __future__ import annotations

import random
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from medattn.engine.loaders import EpochShuffleSampler, make_train_loader


class _RandomViews(Dataset):
    """Item i = i plus noise from all three global generators (what transforms draw from)."""

    def __len__(self) -> int:
        return 20

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.tensor([float(i), torch.rand(()).item(), float(np.random.rand()), random.random()])


def _batches(dl, n: int | None = None) -> list[torch.Tensor]:
    out = []
    for b in dl:
        out.append(b)
        if n is not None and len(out) == n:
            break
    return out


def test_items_depend_on_seed_epoch_index_only() -> None:
    ds = _RandomViews()
    ref = {}
    for workers in (0, 2):
        dl = make_train_loader(ds, batch_size=3, num_workers=workers, seed=7)
        for epoch in (0, 1):
            dl.sampler.set_epoch(epoch)
            torch.manual_seed(123 + workers)  # global state must not matter
            got = torch.cat(_batches(dl))
            if epoch in ref:
                torch.testing.assert_close(got, ref[epoch], rtol=0, atol=0)
            ref[epoch] = got
        del dl
    assert not torch.equal(ref[0], ref[1])  # a new order and new augmentation every epoch
    state = torch.get_rng_state()
    dl = make_train_loader(ds, batch_size=3, num_workers=0, seed=7)
    _batches(dl)
    assert torch.equal(state, torch.get_rng_state()), "loading items moved the global RNG"


def test_loader_state_resumes_at_the_next_batch() -> None:
    ds = _RandomViews()
    full = make_train_loader(ds, batch_size=3, num_workers=2, seed=1)
    full.sampler.set_epoch(2)
    want = _batches(full)
    part = make_train_loader(ds, batch_size=3, num_workers=2, seed=1)
    part.sampler.set_epoch(2)
    _batches(part, 4)
    state = part.state_dict()
    assert state == {"epoch": 2, "batches": 4, "batch_size": 3}
    again = make_train_loader(ds, batch_size=3, num_workers=2, seed=1)
    again.load_state_dict(state)
    it = iter(again)  # created before set_epoch, like Lightning's fetcher on resume
    again.sampler.set_epoch(2)
    rest = list(it)
    assert len(rest) == len(want) - 4
    for a, b in zip(rest, want[4:], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert again.state_dict()["batches"] == len(want)
    # the state of a finished epoch does not skip anything in the next one
    nxt = make_train_loader(ds, batch_size=3, num_workers=0, seed=1)
    nxt.load_state_dict(again.state_dict())
    nxt.sampler.set_epoch(3)
    assert sum(len(b) for b in nxt) == len(ds)


def test_sampler_shards_like_distributed_sampler() -> None:
    shards = [EpochShuffleSampler(11, seed=3, num_replicas=3, rank=r) for r in range(3)]
    idx = [s.indices() for s in shards]
    assert [len(i) for i in idx] == [len(s) for s in shards] == [4, 4, 4]
    assert sorted(set(sum(idx, []))) == list(range(11))
    assert [k for k, _ in zip(iter(shards[0]), range(2), strict=False)][0][0] == 0  # (epoch, index) keys


# --- a Lightning run stopped and resumed in-process -------------------------------------------

class _Stop(RuntimeError):
    pass


class _StopAt(L.Callback):
    """Raise before the training step ``step`` (after the checkpoints of earlier steps)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            raise _Stop(f"stopped before step {self.step}")


def _recipe(extra: dict | None = None):
    from medattn.engine.runner import resolve_recipe

    ov = {"trainer.max_epochs": 3, "trainer.limit_train_batches": None, "data.max_items": 40,
          "data.num_workers": 2, "trainer.deterministic": True, "model.args.width": 0.25,
          "trainer.batch_size": 8, "trainer.seed": 7, "scheduler.patience": 0, **(extra or {})}
    return resolve_recipe("pcam-attention", ov, smoke=True)


def _fit(recipe, data_root: Path, run: Path, *, resume: bool = False, stop: int | None = None):
    from medattn.engine.datamodule import build_data
    from medattn.engine.fit import build_model, build_task, fit_stage

    L.seed_everything(recipe.trainer.seed, workers=True, verbose=False)
    data = build_data(recipe, data_root)
    task = build_task(recipe, build_model(recipe, data.class_names), data)
    cbs = [_StopAt(stop)] if stop is not None else []
    res = fit_stage(recipe, task, data, run, run / "checkpoints", extra_callbacks=cbs, resume=resume)
    return task, res


def _weights(task) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in task.model.state_dict().items()}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, synth_pcam: Path):
    run = tmp_path_factory.mktemp("ref")
    task, res = _fit(_recipe({"trainer.checkpoint_every_n_steps": 3}), synth_pcam, run)
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 15  # written after every epoch, improving or not
    return _weights(task), res.history


@pytest.mark.parametrize("where", ["epoch_end", "mid_epoch"])
def test_lightning_resume_matches_uninterrupted(where: str, tmp_path: Path, synth_pcam: Path, uninterrupted) -> None:
    ref_w, ref_hist = uninterrupted
    recipe = _recipe({"trainer.checkpoint_every_n_steps": 3})  # 5 batches/epoch: steps 3, 6, 9, 12 mid-epoch
    stop = 10 if where == "epoch_end" else 8  # last checkpoint: end of epoch 1 / step 6 (batch 1 of epoch 1)
    with pytest.raises(_Stop):
        _fit(recipe, synth_pcam, tmp_path, stop=stop)
    ck = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ck["global_step"] == (10 if where == "epoch_end" else 6)
    assert ck["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["batches"] == (5 if where == "epoch_end" else 1)
    task, res = _fit(recipe, synth_pcam, tmp_path, resume=True)
    for k, v in ref_w.items():
        torch.testing.assert_close(task.model.state_dict()[k], v, rtol=0, atol=1e-6, msg=k)
    assert len(res.history) == len(ref_hist) == 3
    for a, b in zip(res.history, ref_hist, strict=True):
        assert a.keys() == b.keys()
        np.testing.assert_allclose([a[k] for k in sorted(a)], [b[k] for k in sorted(b)], rtol=0, atol=1e-6)
