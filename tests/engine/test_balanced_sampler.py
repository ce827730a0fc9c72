"""``data.sampler: balanced``: class-balanced draws with replacement, still a pure function of (seed, epoch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from medattn.engine.config import load_recipe
from medattn.engine.loaders import EpochShuffleSampler, class_balanced_weights, make_train_loader


class _Labelled(Dataset):
    def __init__(self, labels: list[int]) -> None:
        self._y = labels

    def __len__(self) -> int:
        return len(self._y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.tensor([float(i)]), self._y[i]

    def labels(self) -> np.ndarray:
        return np.asarray(self._y)


def test_weights_are_inverse_class_counts_and_follow_repeats() -> None:
    w = class_balanced_weights([0, 0, 0, 1, 2, 2], 6)
    assert np.allclose(w, [1 / 3, 1 / 3, 1 / 3, 1.0, 0.5, 0.5])
    w2 = class_balanced_weights([0, 0, 0, 1], 8)  # a dataset listing its 4 items twice (train_repeats 2)
    assert np.allclose(w2, [1 / 6] * 3 + [0.5] + [1 / 6] * 3 + [0.5])
    assert np.isclose(w2.sum(), 2.0)  # each class carries the same total weight
    with pytest.raises(ValueError, match="one integer label per item"):
        class_balanced_weights(np.zeros((4, 3)), 4)  # multilabel
    with pytest.raises(ValueError, match="one integer label per item"):
        class_balanced_weights([0, 1, 1], 4)


def test_balanced_draws_are_seeded_and_balanced() -> None:
    y = [0] * 900 + [1] * 100
    w = class_balanced_weights(y, len(y))
    s = EpochShuffleSampler(len(y), seed=3, weights=w)
    s.set_epoch(2)
    a = s.indices()
    assert len(a) == len(y)
    again = EpochShuffleSampler(len(y), seed=3, weights=w)
    again.set_epoch(2)
    assert again.indices() == a  # (seed, epoch) fixes the draws
    again.set_epoch(3)
    assert again.indices() != a
    minority = np.mean([np.asarray(y)[i] for i in a])
    assert 0.45 < minority < 0.55  # 10% of the items, half of the draws
    assert len(set(a)) < len(y)  # with replacement: majority items are left out, minority ones repeat
    plain = EpochShuffleSampler(len(y), seed=3)
    plain.set_epoch(2)
    assert sorted(plain.indices()) == list(range(len(y)))  # the default stays a permutation
    s.resume_at(2, 10)  # exact resume: the same draws, after the first 10
    assert [i for _, i in iter(s)] == a[10:]
    with pytest.raises(ValueError, match="non-negative weights"):
        EpochShuffleSampler(3, weights=[1.0, -1.0, 1.0])


def test_balanced_loader_yields_balanced_batches() -> None:
    ds = _Labelled([0] * 60 + [1] * 4)
    seen = torch.cat([y for _, y in make_train_loader(ds, 16, 0, seed=0, balanced=True)])
    assert len(seen) == 64 and 0.35 < seen.float().mean() < 0.65
    plain = torch.cat([y for _, y in make_train_loader(ds, 16, 0, seed=0)])
    assert int(plain.sum()) == 4


def test_balanced_sampler_only_for_classification() -> None:
    with pytest.raises(Exception, match="field 'data.sampler': is for binary and multiclass tasks"):
        load_recipe("nuclei-cpu", ["data.sampler=balanced"])
    r = load_recipe("herlev-cpu", ["data.sampler=balanced", "loss.class_weights=null"])
    assert (r.data.sampler, r.loss.class_weights) == ("balanced", None)


def test_smoke_train_with_balanced_sampler(tmp_path) -> None:  # noqa: ANN001
    from medattn.engine.runner import train_run

    out = tmp_path / "run"
    train_run("herlev-cpu", out=out, smoke=True, overrides=["data.sampler=balanced", "loss.class_weights=null"])
    assert (out / "bundle" / "bundle.json").is_file() and (out / "metrics.json").is_file()
    assert "sampler: balanced" in (out / "recipe.yaml").read_text()
