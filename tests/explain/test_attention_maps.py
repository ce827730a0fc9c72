"""Native attention maps read from the modules themselves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medattn.attention import AttentionModule
from medattn.errors import ModelError
from medattn.explain.attention_maps import attention_maps, channel_weights, spatial_maps
from medattn.models import create_model


def test_spatial_maps_at_input_resolution_and_channel_weights() -> None:
    torch.manual_seed(0)
    model = create_model("patch_cnn_attention", width=0.25).eval()
    x = torch.randn(2, 3, 32, 32)
    maps = attention_maps(model, x)
    sp = [m for m in maps if m.kind == "spatial"]
    ch = channel_weights(maps)
    assert len(sp) == 4 and len(ch) == 4
    assert all(m.values.shape == (2, 32, 32) for m in sp)
    assert [m.native_shape[-1] for m in sp] == [32, 16, 8, 4]  # recorded before upsampling
    assert all(v.shape[0] == 2 and v.ndim == 2 for v in ch.values())
    assert all(0 <= m.values.min() and m.values.max() <= 1 for m in sp)  # sigmoid gates
    # recording switched off and maps released afterwards
    assert all(not m.record_attention and m.last_attention is None
               for m in model.modules() if isinstance(m, AttentionModule))
    # the deepest map equals the module's own record, upsampled
    last = dict(model.named_modules())[sp[-1].name]
    last.record_attention = True
    model(x)
    ref = torch.nn.functional.interpolate(last.last_attention, size=(32, 32), mode="bilinear", align_corners=False)
    last.record_attention = False
    np.testing.assert_allclose(sp[-1].values, ref[:, 0].numpy(), atol=1e-6)
    assert spatial_maps(maps, "last").shape == (2, 32, 32)
    assert spatial_maps(maps, "product").max() <= sp[-1].values.max() + 1e-6


def test_model_without_attention_is_a_clear_error() -> None:
    model = create_model("patch_cnn_baseline", width=0.25)
    with pytest.raises(ModelError, match="no attention modules"):
        attention_maps(model, torch.randn(1, 3, 32, 32))
