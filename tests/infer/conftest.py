"""Deterministic predictors for inference tests: the answers are known without training.

* :func:`dark_classifier`: P(positive) = sigmoid(k · (c − mean intensity)): darker (nuclei-rich)
  patches score higher, a fixed monotone scorer whose AUROC on patches can be compared with the
  AUROC of the same scorer stitched over a slide.
* :func:`dark_segmenter`: a background / interior / boundary head where dark pixels are interior,
  so the instances of an image of dark discs are exactly its discs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from medattn.bundle import Predictor


class DarkScore(nn.Module):
    def __init__(self, centre: float = 0.72, gain: float = 25.0) -> None:
        super().__init__()
        self.centre, self.gain = centre, gain
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gain * (self.centre - x.mean((1, 2, 3)))[:, None] + self.dummy


class DarkPixels(nn.Module):
    def __init__(self, level: float = 0.5) -> None:
        super().__init__()
        self.level = level
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i = x.mean(1, keepdim=True)
        return torch.cat([30 * (i - self.level), 30 * (self.level - i), torch.full_like(i, -30.0)], 1) + self.dummy


def make_predictor(model: nn.Module, **meta: Any) -> Predictor:
    base = {"architecture": {"name": "test", "kwargs": {}}, "in_chans": 3, "mean": [0.0, 0.0, 0.0],
            "std": [1.0, 1.0, 1.0], "weights_sha256": "0"}
    return Predictor(model=model.eval(), meta={**base, **meta}, device=torch.device("cpu"), source="test-bundle")


@pytest.fixture
def dark_classifier() -> Predictor:
    return make_predictor(DarkScore(), task="binary", class_names=["normal", "tumour"], input_size=50,
                          threshold=0.5, mpp=4.0)


@pytest.fixture
def dark_segmenter() -> Predictor:
    return make_predictor(DarkPixels(), task="segmentation", class_names=["background", "interior", "boundary"],
                          input_size=64, mpp=0.5, postprocess={"method": "three_class", "min_size": 5},
                          recipe={"task": {"seg_target": "three_class"},
                                  "evaluation": {"tile_size": 64, "tile_overlap": 16}})


def disc_image(h: int, w: int, centres: list[tuple[int, int]], r: int = 7) -> np.ndarray:
    """Light pink ``h×w×3`` uint8 image with dark purple discs of radius ``r`` at ``(y, x)``."""
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (236, 200, 220)
    yy, xx = np.mgrid[:h, :w]
    for cy, cx in centres:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = (70, 30, 110)
    return img


def save_tiny_bundle(path: Any, gain: float = 1.0) -> Any:
    """A saved binary bundle of a tiny CNN (32 px input at 2 µm/px). ``gain`` scales its last
    layer, whose bias then puts the median logit of SynthPCam patches at 0: a large gain spreads
    tile scores over (0, 1) around the 0.5 threshold."""
    from medattn.bundle import save_bundle
    from medattn.data.synthetic import make_pcam_patch
    from medattn.models import create_model

    torch.manual_seed(0)
    model = create_model("patch_cnn_baseline", num_classes=1, width=0.125).eval()
    if gain != 1.0:
        rng = np.random.default_rng(0)
        x = np.stack([make_pcam_patch(rng, bool(i % 2))[0][::3, ::3][:32, :32] for i in range(32)])
        x = (torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
        with torch.no_grad():
            model.head[-1].weight.mul_(gain)
            model.head[-1].bias.zero_()
            model.head[-1].bias.sub_(model(x).median())
    meta = {"task": "binary", "class_names": ["normal", "tumour"], "input_size": 32, "in_chans": 3,
            "mean": [0.5] * 3, "std": [0.25] * 3, "threshold": 0.5, "recipe": {"data": {"mpp": 2.0}}}
    return save_bundle(model, meta, path)
