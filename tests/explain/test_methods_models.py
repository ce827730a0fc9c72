"""Every CAM method on every registered model (``list_models()`` read at collection time, so a
newly registered model is covered automatically).

Classifiers (and AG-CNN) get class targets; segmentation models get segmentation targets.
On the big backbones only Grad-CAM is in the fast suite; their other methods are marked slow
(``pytest -m slow``), as is Score-CAM beyond the small models.
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
# small enough for every method in the fast suite (reduced widths keep Score-CAM at ~64 channels)
SMALL = {"patch_cnn_attention", "patch_cnn_baseline", "unet", "resnet18"}
_MODEL_KW = {
    "patch_cnn_attention": {"width": 0.25},
    "patch_cnn_baseline": {"width": 0.25},
    "resnet18": {"attention": "cbam"},
    "agcnn": {"backbone": "resnet18", "crop_size": 32},
    "unet": {"num_classes": 2, "width": 8, "depth": 3, "skip_attention": "ag"},
}


@lru_cache(maxsize=2)
def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    kw = {"num_classes": 3, **_MODEL_KW.get(name, {})}
    try:
        m = create_model(name, **kw)
    except Exception:  # a builder with other argument names: its defaults
        m = create_model(name)
    return m.eval()


def _slow(name: str, method: str) -> bool:
    """Big backbones run Grad-CAM in the fast suite and every other method in the slow one;
    Score-CAM (one forward per channel) is slow beyond the small models."""
    if name in SMALL:
        return method == "scorecam" and name == "resnet18"
    return method != "gradcam"


def _cases() -> list[object]:
    out = []
    for name in list_models():
        for method in CAM_METHODS:
            marks = [pytest.mark.slow] if _slow(name, method) else []
            out.append(pytest.param(name, method, marks=marks, id=f"{name}-{method}"))
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
    maps = compute_cams(model, x, targets, method=method, scorecam_batch=128)
    assert maps.shape == (2, SIZE, SIZE)
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1 + 1e-6
    assert all(not m._forward_hooks for m in model.modules())
    if method == "gradcam":
        layer_name, layer = find_target_layer(model, (1, 3, SIZE, SIZE))
        assert layer_name and layer is not model
        if name == "agcnn":
            assert layer_name.startswith("global_branch."), "AG-CNN CAMs must live in input coordinates"
