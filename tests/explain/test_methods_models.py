"""Every CAM method on every registered model (``list_models()`` read at collection time).

Classifiers (and AG-CNN) get class targets; segmentation models get segmentation targets.
Score-CAM on the big backbones is marked slow (thousands of forward passes).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
import torch

from medattn.explain.cam import CAM_METHODS, compute_cams
from medattn.explain.layers import find_target_layer
from medattn.explain.targets import ClassTarget, logits_of, resolve_targets
from medattn.models import create_model, list_models, model_task

SIZE = 64
SMALL = {"patch_cnn_attention", "patch_cnn_baseline", "resnet18", "unet"}
_MODEL_KW = {"agcnn": {"backbone": "resnet18", "crop_size": 32}, "unet": {"num_classes": 2}}


@lru_cache(maxsize=2)
def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    kw = {"num_classes": 3, **_MODEL_KW.get(name, {})}
    try:
        m = create_model(name, **kw)
    except Exception:  # a builder with other argument names: its defaults
        m = create_model(name)
    return m.eval()


def _cases() -> list[object]:
    out = []
    for name in list_models():
        for method in CAM_METHODS:
            slow = method == "scorecam" and name not in SMALL
            out.append(pytest.param(name, method, marks=[pytest.mark.slow] if slow else [], id=f"{name}-{method}"))
    return out


@pytest.mark.parametrize(("name", "method"), _cases())
def test_method_runs_on_model(name: str, method: str) -> None:
    model = _model(name)
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        logits = logits_of(model(x))
    if model_task(name) == "segmentation":
        names = [f"c{i}" for i in range(max(2, logits.shape[1]))]
        targets = [s.target for s in resolve_targets(logits, "segmentation", 1, names)]
    else:
        targets = [ClassTarget(1), ClassTarget(2)]
    maps = compute_cams(model, x, targets, method=method, scorecam_batch=64)
    assert maps.shape == (2, SIZE, SIZE)
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1 + 1e-6
    assert all(not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("name", list_models())
def test_target_layer_is_spatial_and_not_the_output(name: str) -> None:
    model = _model(name)
    layer_name, layer = find_target_layer(model, (1, 3, SIZE, SIZE))
    assert layer_name and layer is not model
    if name == "agcnn":
        assert layer_name.startswith("global_branch."), "AG-CNN CAMs must live in input coordinates"
