"""Focal loss and MixUp/CutMix for classification: γ = 0 is exactly the cross-entropy, a larger γ
down-weights items already right, mixed batches train on blended labels, evaluation never mixes."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from medattn.engine.config import load_recipe
from medattn.engine.tasks import ClassificationTask, focal_bce, focal_cross_entropy


def test_focal_with_gamma_zero_is_the_cross_entropy() -> None:
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(16, 4, generator=g), torch.randint(0, 4, (16,), generator=g)
    w = torch.tensor([1.0, 2.0, 0.5, 3.0])
    soft = torch.softmax(torch.randn(16, 4, generator=g), 1)
    for weight in (None, w):
        for ls in (0.0, 0.1):
            ce = nn.CrossEntropyLoss(weight=weight, label_smoothing=ls)
            torch.testing.assert_close(focal_cross_entropy(logits, y, 0.0, weight, ls), ce(logits, y))
            torch.testing.assert_close(focal_cross_entropy(logits, soft, 0.0, weight, ls), ce(logits, soft))
    z, t = torch.randn(16, generator=g), torch.rand(16, generator=g)
    pw = torch.tensor([2.5])
    torch.testing.assert_close(focal_bce(z, t, 0.0, pw), nn.BCEWithLogitsLoss(pos_weight=pw)(z, t))


def test_focal_downweights_items_already_right() -> None:
    # one item, 3 classes, true class 0 with probability p: loss = -(1-p)^γ log p (computed by hand)
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    p = math.exp(2) / (math.exp(2) + 1 + math.exp(-1))
    got = float(focal_cross_entropy(logits, torch.tensor([0]), 2.0))
    assert got == pytest.approx(-((1 - p) ** 2) * math.log(p), rel=1e-6)
    # a confident right item loses far more weight than an uncertain one
    sure, unsure = torch.tensor([[6.0, 0.0, 0.0]]), torch.tensor([[0.2, 0.0, 0.0]])
    ratio = lambda x: float(focal_cross_entropy(x, torch.tensor([0]), 2.0) / nn.functional.cross_entropy(x, torch.tensor([0])))  # noqa: E731
    assert ratio(sure) < 1e-4 < 0.3 < ratio(unsure) < 1
    # binary: p_t for a positive with logit z is sigmoid(z)
    z = torch.tensor([1.5])
    q = 1 / (1 + math.exp(-1.5))
    assert float(focal_bce(z, torch.tensor([1.0]), 2.0)) == pytest.approx((1 - q) ** 2 * -math.log(q), rel=1e-6)


class _Lin(nn.Module):
    def __init__(self, k: int) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_training_batches_are_mixed_and_evaluation_is_not(kind: str) -> None:
    k = 1 if kind == "binary" else 3
    task = ClassificationTask(_Lin(k), kind=kind, mix="mixup", mix_alpha=1.0, num_classes=3)
    seen = []
    task.loss_fn.register_forward_hook(lambda m, i, o: seen.append(i[1].clone()))
    torch.manual_seed(0)
    x, y = torch.rand(8, 3, 8, 8), torch.tensor([0, 1, 0, 1, 1, 0, 1, 0]) if kind == "binary" else \
        torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    task._step((x, y), mix=True)
    target = seen[-1]
    if kind == "binary":  # blended labels strictly between 0 and 1 for pairs of different classes
        assert target.dtype.is_floating_point and ((target > 0) & (target < 1)).any()
    else:
        assert target.shape == (8, 3) and torch.allclose(target.sum(1), torch.ones(8))
        assert (target.max(1).values < 1).any()
    task._step((x, y), mix=False)  # validation / test: the labels as they are
    assert torch.equal(seen[-1].long(), y) and seen[-1].ndim == 1


def test_mix_and_focal_refused_outside_classification() -> None:
    with pytest.raises(Exception, match="field 'loss.mix': is for binary and multiclass tasks .this recipe is "
                                        "segmentation.; remove it"):
        load_recipe("nuclei-cpu", ["loss.mix=cutmix"])
    with pytest.raises(Exception, match="field 'loss.focal_gamma': is for binary and multiclass"):
        load_recipe("cxr14-agcnn", ["loss.focal_gamma=2"])
    r = load_recipe("herlev-cpu", ["loss.mix=mixup_or_cutmix", "loss.focal_gamma=2"])
    assert (r.loss.mix, r.loss.focal_gamma) == ("mixup_or_cutmix", 2.0)


def test_smoke_train_with_mix_and_focal(tmp_path) -> None:  # noqa: ANN001
    from medattn.engine.runner import train_run

    out = tmp_path / "run"
    train_run("herlev-cpu", out=out, smoke=True, overrides=["loss.mix=mixup_or_cutmix", "loss.focal_gamma=2"])
    assert (out / "bundle" / "bundle.json").is_file() and (out / "metrics.json").is_file()
