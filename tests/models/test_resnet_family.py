"""Attention ResNets, EfficientNetV2-S and DenseNet-121 built on torchvision."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medattn.attention import AttentionModule, list_attention, recording
from medattn.errors import ModelError
from medattn.explain.layers import find_target_layer
from medattn.models import create_model


def _count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


def test_cbam_resnet50_has_the_papers_parameter_count() -> None:
    model = create_model("cbam_resnet50", num_classes=1000)
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - 28.09e6) / 28.09e6 < 0.01, n
    plain = create_model("resnet50", num_classes=1000)
    assert sum(p.numel() for p in plain.parameters()) == 25_557_032  # torchvision's resnet50


def test_block_and_stage_placement() -> None:
    from medattn.attention import CBAM

    block = create_model("cbam_resnet50", num_classes=5)
    stage = create_model("cbam_resnet50", num_classes=5, placement="stage")
    assert _count(block, CBAM) == 16  # one per bottleneck (3+4+6+3)
    assert _count(stage, CBAM) == 4
    assert isinstance(stage.layer4[-1], CBAM)
    x = torch.randn(2, 3, 32, 32)
    assert stage(x).shape == (2, 5)


@pytest.mark.parametrize("name", [n for n in list_attention() if n != "attention_gate"])
def test_resnet18_takes_every_one_input_mechanism(name: str) -> None:
    model = create_model("resnet18", num_classes=2, attention=name, in_chans=1)
    x = torch.randn(2, 1, 32, 32)
    with recording(model) as mods:
        assert model(x).shape == (2, 2)
        assert mods and all(m.last_attention is not None for _, m in mods)


def test_attention_gate_is_refused_in_classifiers() -> None:
    with pytest.raises(ModelError, match="takes two inputs"):
        create_model("resnet18", attention="attention_gate")


def test_bad_placement() -> None:
    with pytest.raises(ModelError, match="placement must be one of block, stage"):
        create_model("resnet18", placement="head")


@pytest.mark.parametrize(
    ("name", "kw", "layer"),
    [
        ("cbam_resnet50", {}, "layer4"),
        ("efficientnet_v2_s", {"attention": "cbam"}, "attn"),
        ("densenet121", {}, "act"),
    ],
)
def test_cam_target_layer_is_the_refined_last_map(name: str, kw: dict, layer: str) -> None:
    model = create_model(name, num_classes=2, **kw)
    name_found, mod = find_target_layer(model, (1, 3, 64, 64))
    assert name_found == layer
    feats = model.forward_features(torch.randn(1, 3, 64, 64))
    assert feats.shape[1] == model.num_features
    if kw.get("attention"):
        assert isinstance(mod, AttentionModule) or any(isinstance(m, AttentionModule) for m in mod.modules())


def test_efficientnet_idc_head() -> None:
    model = create_model("efficientnet_v2_s", num_classes=1)
    head = model.classifier
    assert isinstance(head[0], nn.Dropout) and head[0].p == 0.2
    assert isinstance(head[1], nn.SELU)
    assert isinstance(head[2], nn.Linear) and (head[2].in_features, head[2].out_features) == (1280, 1)
