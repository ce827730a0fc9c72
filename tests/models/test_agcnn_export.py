"""AG-CNN's crop is torch-only: labelling equals scipy, crop equals RoIAlign, and it exports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from medattn.models.agcnn_crop import (
    attention_boxes,
    component_labels,
    crop_boxes,
    label_rounds,
    largest_component,
    mask_boxes,
)


def _scipy_largest(m: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    lab, n = ndimage.label(m, structure=np.ones((3, 3), bool))
    if not n:
        return np.zeros_like(m)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == sizes.argmax()  # ties: the lowest label, i.e. first met in raster order


def _serpentine(n: int) -> np.ndarray:
    m = np.zeros((n, n), bool)
    m[::2] = True
    for r in range(1, n, 2):
        m[r, n - 1 if (r // 2) % 2 == 0 else 0] = True
    return m


@pytest.mark.parametrize("density", [0.3, 0.45, 0.55, 0.7])
def test_largest_component_and_box_equal_scipy_on_random_masks(density: float) -> None:
    rng = np.random.default_rng(int(density * 100))
    masks = rng.random((24, 37, 29)) < density
    masks[0] = False  # empty stays empty
    masks[1] = False
    masks[1, 2:4, 2:4] = masks[1, 10:12, 10:12] = True  # a size tie: the first in raster order wins
    want = np.stack([_scipy_largest(m) for m in masks])
    got = largest_component(torch.from_numpy(masks))
    assert np.array_equal(got.numpy(), want)
    assert torch.equal(mask_boxes(got), mask_boxes(torch.from_numpy(want)))
    # the fixed number of rounds an exported graph runs gives the same answer
    fixed = largest_component(torch.from_numpy(masks), rounds=label_rounds(37, 29), exact=False)
    assert np.array_equal(fixed.numpy(), want)


def test_fixed_rounds_cover_a_long_serpentine() -> None:
    m = torch.from_numpy(_serpentine(128))[None]
    lab = component_labels(m, rounds=label_rounds(128, 128), exact=False)
    assert len(torch.unique(lab[m])) == 1  # one winding component, fully merged within the bound
    assert len(torch.unique(component_labels(m, rounds=1, exact=False)[m])) > 1  # 1 round is not
    assert len(torch.unique(component_labels(m, rounds=1)[m])) == 1  # eager default: exact anyway


def test_crop_equals_roi_align() -> None:
    from torchvision.ops import roi_align

    g = torch.Generator().manual_seed(0)
    for h, w, out in ((48, 48, 32), (64, 40, 16), (30, 50, 64)):
        img = torch.randn(5, 3, h, w, generator=g)
        x1 = torch.randint(0, w - 1, (5,), generator=g).float()
        y1 = torch.randint(0, h - 1, (5,), generator=g).float()
        x2 = (x1 + 1 + torch.rand(5, generator=g) * (w - x1 - 1)).floor()
        y2 = (y1 + 1 + torch.rand(5, generator=g) * (h - y1 - 1)).floor()
        boxes = torch.stack([x1, y1, x2, y2], 1)
        boxes[0] = torch.tensor([0.0, 0.0, w, h])
        rois = torch.cat([torch.arange(5.0)[:, None], boxes], 1)
        ref = roi_align(img, rois, output_size=(out, out), spatial_scale=1.0, sampling_ratio=-1, aligned=True)
        torch.testing.assert_close(crop_boxes(img, boxes, out), ref, atol=1e-5, rtol=1e-5)


class _Crop(nn.Module):
    """Features → AG-CNN box → crop of the image: the data-dependent half of AG-CNN."""

    def forward(self, feats: torch.Tensor, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        boxes = attention_boxes(feats, tuple(img.shape[-2:]), 0.7)
        return boxes, crop_boxes(img, boxes, 16)


def _feats_and_images() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    feats = torch.rand(3, 4, 8, 8, generator=g) * 0.3
    feats[0, 1, 1:4, 2:7] = 1.0  # image 0: one big blob and a small one
    feats[0, 2, 6:8, 0:2] = 0.9
    feats[1, 0, 5:8, 5:8] = -1.0
    return feats, torch.randn(3, 3, 32, 32, generator=g)


def test_crop_pipeline_traces_without_data_dependent_python() -> None:
    """A trace made on one batch gives the eager answer on another (different boxes, batch size)."""
    feats, img = _feats_and_images()
    with torch.no_grad():
        traced = torch.jit.trace(_Crop(), (feats, img), check_trace=False)
        other_f, other_i = feats.flip(0)[:2].roll(2, dims=-1), img[:2] * 2
        got, want = traced(other_f, other_i), _Crop()(other_f, other_i)
    assert torch.equal(got[0], want[0]) and want[0][1].tolist() != [0.0, 0.0, 32.0, 32.0]
    torch.testing.assert_close(got[1], want[1])


@pytest.mark.slow
def test_crop_pipeline_exports_to_onnx(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    feats, img = _feats_and_images()
    path = tmp_path / "crop.onnx"
    batch = torch.export.Dim("batch", min=1, max=64)
    prog = torch.onnx.export(_Crop(), (feats, img), dynamo=True, opset_version=18,
                             dynamic_shapes={"feats": {0: batch}, "img": {0: batch}}, verbose=False)
    prog.save(str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    boxes, crops = sess.run(None, {names[0]: feats.numpy(), names[1]: img.numpy()})
    want_boxes, want_crops = _Crop()(feats, img)
    assert np.array_equal(boxes, want_boxes.numpy())
    assert boxes[0].tolist() != [0.0, 0.0, 32.0, 32.0]  # a real crop, not the fallback
    np.testing.assert_allclose(crops, want_crops.numpy(), atol=1e-5)
