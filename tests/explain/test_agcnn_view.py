"""AG-CNN view (skips while the model is not registered)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medattn.models import create_model, list_models

pytestmark = pytest.mark.skipif("agcnn" not in list_models(), reason="agcnn is not registered yet")


def test_view_is_consistent_with_the_model() -> None:
    from medattn.explain.agcnn_view import agcnn_figure, agcnn_view

    torch.manual_seed(0)
    model = create_model("agcnn", num_classes=4, backbone="resnet18", crop_size=32).eval()
    x = torch.randn(2, 3, 64, 64)
    views = agcnn_view(model, x, mean=[0.5] * 3, std=[0.25] * 3)
    out = model.forward_all(x)
    assert len(views) == 2
    for i, v in enumerate(views):
        assert v.heatmap.shape == (64, 64) and 0 <= v.heatmap.min() and v.heatmap.max() <= 1
        assert v.crop.shape == (32, 32, 3)
        np.testing.assert_allclose(v.box, out[3][i].tolist(), atol=1e-5)
        if v.mask.any():  # the model's box is the mask's bounding box
            ys, xs = np.nonzero(v.mask)
            assert v.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        for k, logits in (("global", out[0]), ("local", out[1]), ("fusion", out[2])):
            np.testing.assert_allclose(v.probabilities[k], torch.sigmoid(logits[i]).detach().numpy(), atol=1e-5)
    png = agcnn_figure(views[0], np.zeros((64, 64, 3), np.uint8), ["a", "b", "c", "d"])
    assert png[:4] == b"\x89PNG"


def test_view_rejects_other_models() -> None:
    from medattn.errors import ModelError
    from medattn.explain.agcnn_view import agcnn_view

    with pytest.raises(ModelError, match="not an AG-CNN"):
        agcnn_view(create_model("patch_cnn_baseline", width=0.25), torch.randn(1, 3, 32, 32))
