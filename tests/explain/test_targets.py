"""Target resolution for binary, multiclass, multilabel and segmentation outputs."""

from __future__ import annotations

import pytest
import torch

from medattn.errors import ConfigError
from medattn.explain.targets import (
    BinaryLogitTarget,
    ClassTarget,
    SegmentationTarget,
    resolve_targets,
)


def test_binary_top_follows_threshold_and_negative_class_is_negated_logit() -> None:
    logits = torch.tensor([[2.0], [-1.0]])
    specs = resolve_targets(logits, "binary", "top", ["normal", "tumour"], 0.5)
    assert [(s.item, s.class_name) for s in specs] == [(0, "tumour"), (1, "normal")]
    assert isinstance(specs[1].target, BinaryLogitTarget)
    assert float(specs[1].target(logits[1])) == 1.0  # -(-1)
    specs = resolve_targets(logits, "binary", "top", ["normal", "tumour"], 0.95)
    assert specs[0].class_name == "normal"
    assert len(resolve_targets(logits, "binary", "all", ["normal", "tumour"])) == 4


def test_multiclass_top_is_argmax_and_named_class() -> None:
    logits = torch.tensor([[0.1, 3.0, 0.2]])
    assert resolve_targets(logits, "multiclass", "top", ["a", "b", "c"])[0].class_index == 1
    s = resolve_targets(logits, "multiclass", "C", ["a", "b", "c"])[0]
    assert s.class_index == 2 and isinstance(s.target, ClassTarget)
    assert float(s.target(logits[0])) == pytest.approx(0.2)


def test_multilabel_one_target_per_finding() -> None:
    logits = torch.tensor([[2.0, -3.0, 1.0, -1.0]])
    names = ["Effusion", "Mass", "Nodule", "Edema"]
    assert [s.class_name for s in resolve_targets(logits, "multilabel", "top", names)] == ["Effusion", "Nodule"]
    assert [s.class_name for s in resolve_targets(logits, "multilabel", "all", names)] == names
    none_pos = torch.tensor([[-2.0, -0.5, -3.0, -4.0]])
    assert [s.class_name for s in resolve_targets(none_pos, "multilabel", "top", names)] == ["Mass"]


def test_segmentation_target_sums_class_logits_over_predicted_region() -> None:
    logits = torch.zeros(1, 3, 4, 4)
    logits[0, 2, :2, :2] = 5.0
    specs = resolve_targets(logits, "segmentation", "top", ["bg", "a", "b"])
    assert [s.class_name for s in specs] == ["b"]
    tg = specs[0].target
    assert isinstance(tg, SegmentationTarget)
    assert float(tg(logits[0])) == pytest.approx(20.0)  # 4 pixels × 5
    single = torch.full((1, 1, 4, 4), -1.0)
    single[0, 0, 0, 0] = 2.0
    s = resolve_targets(single, "segmentation", "top", ["background", "nucleus"])[0]
    assert s.class_index == 1 and float(s.target(single[0])) == pytest.approx(2.0)


def test_hover_head_is_explained_by_its_nuclear_pixel_logit() -> None:
    from medattn.explain.perturbation import ProbabilityTarget

    logits = torch.full((1, 3, 4, 4), -1.0)
    logits[0, 0, :2, :2] = 2.0  # 4 nuclear pixels
    logits[0, 1:] = 9.0  # distance maps: large values that are not classes
    specs = resolve_targets(logits, "segmentation", "all", ["background", "foreground"], seg_target="hover")
    assert [s.class_name for s in specs] == ["background", "foreground"]
    fg = specs[1].target
    assert float(fg(logits[0])) == pytest.approx(8.0)  # 4 pixels × logit 2, channel 0 only
    assert float(ProbabilityTarget(fg, "softmax")(logits[0])) == pytest.approx(float(torch.sigmoid(torch.tensor(2.0))))
    assert float(specs[0].target(logits[0])) == pytest.approx(12.0)  # background: 12 pixels × −(−1)
    top = resolve_targets(logits, "segmentation", "top", ["background", "foreground"], seg_target="hover")
    assert [s.class_name for s in top] == ["foreground"]
    # read as a 3-class head the same logits would name a third class
    assert len(resolve_targets(logits, "segmentation", "all", ["background", "foreground"])) == 3


def test_out_of_range_and_unknown_classes_list_the_valid_ones() -> None:
    logits = torch.zeros(1, 3)
    with pytest.raises(ConfigError, match="out of range.*0..2"):
        resolve_targets(logits, "multiclass", 5, ["a", "b", "c"])
    with pytest.raises(ConfigError, match="top, all.*a, b, c"):
        resolve_targets(logits, "multiclass", "zebra", ["a", "b", "c"])
