"""CAM computation: target layer, hooks released, model restored, parity with pytorch-grad-cam."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from medattn.errors import ConfigError, ModelError
from medattn.explain.cam import CAM_METHODS, cam_context, compute_cams
from medattn.explain.layers import find_target_layer
from medattn.explain.targets import ClassTarget
from medattn.models import create_model


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("patch_cnn_attention", width=0.25, num_classes=3).eval()


def _live_tensors() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))


def test_target_layer_is_after_the_last_attention_block(model: torch.nn.Module) -> None:
    name, layer = find_target_layer(model, (1, 3, 32, 32))
    assert name == "stages.3"
    # the chosen module's output is the attention-refined map: its last child is the attention block
    assert type(list(layer.children())[-1]).__name__ == "CBAM"


def test_repeated_calls_release_hooks_and_do_not_grow_memory(model: torch.nn.Module) -> None:
    x = torch.randn(2, 3, 32, 32)
    flags = [p.requires_grad for p in model.parameters()]
    model.train()
    compute_cams(model, x, method="gradcam")
    before = _live_tensors()
    for _ in range(3):
        compute_cams(model, x, method="gradcam")
        with cam_context(model, "layercam", input_shape=(1, 3, 32, 32)) as cam:
            cam(input_tensor=x, targets=None)
    after = _live_tensors()
    assert after <= before + 2, f"live tensors grew from {before} to {after}"
    for name, mod in model.named_modules():
        assert not mod._forward_hooks, f"forward hook left on '{name}'"
        assert not mod._forward_pre_hooks and not mod._backward_hooks
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters()), "CAM left weight gradients behind"
    assert model.training, "training flag not restored"
    model.eval()


def test_hooks_released_when_the_cam_raises(model: torch.nn.Module) -> None:
    with pytest.raises(ModelError):
        compute_cams(model, torch.randn(1, 5, 32, 32))  # wrong channel count
    assert all(not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam"])
def test_maps_equal_plain_pytorch_grad_cam(model: torch.nn.Module, method: str) -> None:
    cls = CAM_METHODS[method]
    x = torch.randn(3, 3, 32, 32)
    tg = [ClassTarget(i) for i in range(3)]
    ours = compute_cams(model, x, tg, method=method)
    with cls(model=model, target_layers=[find_target_layer(model, (1, 3, 32, 32))[1]]) as cam:
        ref = cam(input_tensor=x, targets=tg)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    assert ours.shape == (3, 32, 32) and ours.min() >= 0 and ours.max() <= 1


def test_explicit_layer_and_batches(model: torch.nn.Module) -> None:
    x = torch.randn(3, 3, 32, 32)
    a = compute_cams(model, x, method="gradcam", layer="stages.2", batch_size=2)
    b = compute_cams(model, x, method="gradcam", layer="stages.2", batch_size=3)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_bad_method_and_layer_list_valid_names(model: torch.nn.Module) -> None:
    with pytest.raises(ConfigError, match="gradcam.*scorecam"):
        compute_cams(model, torch.randn(1, 3, 32, 32), method="magic")
    with pytest.raises(ModelError, match="stages.3"):
        compute_cams(model, torch.randn(1, 3, 32, 32), layer="stages.9")
    with pytest.raises(ConfigError, match="one target per image"):
        compute_cams(model, torch.randn(2, 3, 32, 32), [ClassTarget(0)])
