"""Residual U-Net: heads, skip attention variants, odd sizes, recorded gate maps."""

from __future__ import annotations

import pytest
import torch

from medattn.attention import AttentionGate, recording
from medattn.errors import ModelError
from medattn.models import create_model


@pytest.mark.parametrize(
    ("head", "num_classes", "channels"),
    [("semantic", 1, ["foreground"]), ("semantic", 3, ["class_0", "class_1", "class_2"]),
     ("boundary", 1, ["foreground", "boundary"]), ("3class", 1, ["background", "inside", "boundary"])],
)
def test_heads(head: str, num_classes: int, channels: list[str]) -> None:
    model = create_model("unet", num_classes=num_classes, head=head, depth=2, width=4)
    assert model.channel_names == channels and model.out_channels == len(channels)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, len(channels), 16, 16)


@pytest.mark.parametrize("skip", ["none", "ag", "gct", "srm", "se"])
def test_skip_attention_variants_and_odd_sizes(skip: str) -> None:
    model = create_model("unet", skip_attention=skip, depth=3, width=4)
    x = torch.randn(2, 3, 37, 29)
    out = model(x)
    assert out.shape == (2, 1, 37, 29)
    out.mean().backward()


def test_gate_maps_are_recorded_at_skip_resolution() -> None:
    model = create_model("unet", skip_attention="ag", depth=2, width=4)
    with recording(model) as mods:
        model(torch.randn(2, 3, 16, 16))
        gates = [m for _, m in mods if isinstance(m, AttentionGate)]
        assert [tuple(g.last_attention.shape) for g in gates] == [(2, 1, 16, 16), (2, 1, 8, 8)]


@pytest.mark.parametrize(("kw", "msg"), [({"head": "instance"}, "head must be one of"),
                                         ({"depth": 0}, "depth must be between"),
                                         ({"head": "3class", "num_classes": 5}, "num_classes must be 1 or 3"),
                                         ({"skip_attention": "attention_gates"}, "unknown attention")])
def test_bad_arguments(kw: dict, msg: str) -> None:
    with pytest.raises(ModelError, match=msg):
        create_model("unet", **kw)
