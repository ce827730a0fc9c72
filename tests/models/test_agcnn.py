"""AG-CNN: mask inference, crop boxes on constructed heatmaps, branches and stages."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medattn.errors import ModelError
from medattn.explain.layers import find_target_layer
from medattn.models import create_model
from medattn.models.agcnn_crop import (
    attention_boxes,
    attention_heatmap,
    crop_boxes,
    largest_component,
    otsu_threshold,
)


def _two_blobs(size: int = 32) -> torch.Tensor:
    """1×4×S×S features: a big blob (rows 5-14, cols 8-20), a small one, weak noise elsewhere."""
    g = torch.Generator().manual_seed(0)
    f = torch.rand(1, 4, size, size, generator=g) * 0.3
    f[0, 2, 5:15, 8:21] = 1.0
    f[0, 1, 25:28, 2:5] = -0.95  # |features|: sign does not matter
    return f


def test_box_of_largest_component_on_constructed_heatmap() -> None:
    boxes = attention_boxes(_two_blobs(), (32, 32), threshold=0.7, mask_size=(32, 32))
    assert boxes.tolist() == [[8.0, 5.0, 21.0, 15.0]]


def test_box_is_scaled_to_the_input_image() -> None:
    boxes = attention_boxes(_two_blobs(), (64, 128), threshold=0.7, mask_size=(32, 32))
    assert boxes.tolist() == [[32.0, 10.0, 84.0, 30.0]]


def test_otsu_threshold_matches_skimage() -> None:
    from skimage.filters import threshold_otsu

    g = torch.Generator().manual_seed(1)
    heat = attention_heatmap(torch.rand(3, 2, 16, 16, generator=g) ** 3 + _two_blobs(16).repeat(3, 1, 1, 1)[:, :2])
    ours = otsu_threshold(heat)
    for i in range(3):
        assert float(ours[i]) == pytest.approx(threshold_otsu(heat[i].numpy().astype(np.float64)), abs=1e-6)
    boxes = attention_boxes(_two_blobs(), (32, 32), threshold="otsu", mask_size=(32, 32))
    assert boxes.tolist() == [[8.0, 5.0, 21.0, 15.0]]


def test_largest_component_uses_8_connectivity() -> None:
    m = torch.zeros(1, 6, 6, dtype=torch.bool)
    m[0, 0, 0] = m[0, 1, 1] = m[0, 2, 2] = True  # a diagonal line: one 8-connected component
    m[0, 4:6, 4] = True
    assert torch.equal(largest_component(m)[0], m[0] & (torch.eye(6, dtype=torch.bool) & (torch.arange(6) < 3)))


def test_constant_heatmap_falls_back_to_whole_image() -> None:
    boxes = attention_boxes(torch.ones(2, 3, 4, 4), (40, 30), threshold=0.7)
    assert boxes.tolist() == [[0.0, 0.0, 30.0, 40.0]] * 2


def test_crop_is_exact_when_box_matches_output_size() -> None:
    img = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).view(2, 3, 32, 32)
    boxes = torch.tensor([[8.0, 4.0, 24.0, 20.0], [0.0, 16.0, 16.0, 32.0]])
    crops = crop_boxes(img, boxes, 16)
    torch.testing.assert_close(crops[0], img[0, :, 4:20, 8:24])
    torch.testing.assert_close(crops[1], img[1, :, 16:32, 0:16])


def test_forward_all_branches_boxes_and_cam_layer() -> None:
    torch.manual_seed(0)
    model = create_model("agcnn", num_classes=5, backbone="resnet18", crop_size=48)
    x = torch.randn(2, 3, 64, 64)
    out = model.forward_all(x)
    assert [tuple(t.shape) for t in out[:3]] == [(2, 5)] * 3
    assert out.boxes.shape == (2, 4)
    b = out.boxes
    assert ((b[:, 0] >= 0) & (b[:, 1] >= 0) & (b[:, 2] <= 64) & (b[:, 3] <= 64)).all()
    assert ((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])).all()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.forward_all(x).fusion_logits)
    name, _ = find_target_layer(model, (1, 3, 64, 64))
    assert name == "global_branch.layer4"


def test_stages_freeze_the_right_parts() -> None:
    model = create_model("agcnn", num_classes=2, backbone="resnet18", crop_size=32)
    model.set_stage("local")
    model.train()
    assert not any(p.requires_grad for p in model.global_branch.parameters())
    assert all(p.requires_grad for p in model.local_branch.parameters())
    assert not model.global_branch.training and model.local_branch.training
    model.set_stage("fusion")
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fusion"}
    with pytest.raises(ModelError, match="stage must be one of global, local, fusion, all"):
        model.set_stage("both")


@pytest.mark.parametrize(("kw", "msg"), [({"threshold": 1.5}, "threshold must be"),
                                         ({"threshold": "kmeans"}, "threshold must be"),
                                         ({"backbone": "vgg16"}, "backbone must be one of")])
def test_bad_arguments(kw: dict, msg: str) -> None:
    with pytest.raises(ModelError, match=msg):
        create_model("agcnn", **kw)


def test_backbone_checkpoint_initialises_both_branches(tmp_path) -> None:
    src = create_model("resnet18", num_classes=1000)
    torch.save(src.state_dict(), tmp_path / "r18.pth")
    model = create_model("agcnn", num_classes=3, backbone="resnet18", pretrained=str(tmp_path / "r18.pth"))
    for branch in (model.global_branch, model.local_branch):
        torch.testing.assert_close(branch.layer2[0].conv1.weight, src.layer2[0].conv1.weight)
