"""Tiled inference: equals whole-image inference for a pointwise model, pads small images, TTA."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medattn.errors import ConfigError
from medattn.infer.tiling import sliding_window_probs, tile_starts


def test_tile_starts_cover_the_image() -> None:
    assert tile_starts(1000, 256, 64) == [0, 192, 384, 576, 744]
    assert tile_starts(256, 256, 64) == [0]
    assert tile_starts(100, 256, 64) == [0]
    for n, w, o in [(1000, 256, 64), (517, 128, 32), (300, 256, 0)]:
        s = tile_starts(n, w, o)
        covered = np.zeros(n, bool)
        for a in s:
            covered[a:a + w] = True
        assert covered.all() and s[-1] + w == n
        assert all(b - a <= w - o for a, b in zip(s, s[1:], strict=False))
    with pytest.raises(ConfigError, match="overlap"):
        tile_starts(100, 64, 64)


def _pointwise(k: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Conv2d(3, k, 1)


@pytest.mark.parametrize("k", [1, 3])
def test_tiles_equal_whole_image_for_a_pointwise_model(k: int) -> None:
    model = _pointwise(k)
    x = torch.randn(3, 90, 130)
    with torch.no_grad():
        logits = model(x[None])
    whole = (torch.sigmoid(logits) if k == 1 else torch.softmax(logits, 1))[0].numpy()
    got = sliding_window_probs(model, x, window=32, overlap=8, batch_size=3)
    if k == 1:
        assert got.shape == (2, 90, 130)
        np.testing.assert_allclose(got[1], whole[0], atol=1e-6)
        np.testing.assert_allclose(got[0], 1 - whole[0], atol=1e-6)
    else:
        assert got.shape == (3, 90, 130)
        np.testing.assert_allclose(got, whole, atol=1e-6)
    np.testing.assert_allclose(sliding_window_probs(model, x, 32, 8, tta=True), got, atol=1e-6)
    # an image smaller than one window is padded and cropped back
    small = sliding_window_probs(model, x[:, :20, :25], window=32, overlap=8)
    np.testing.assert_allclose(small, got[:, :20, :25], atol=1e-6)


def test_tta_averages_flips_for_a_position_dependent_model() -> None:
    class LeftRight(nn.Module):  # logit grows to the right: flipping changes the answer
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            ramp = torch.linspace(-3, 3, x.shape[-1]).expand(x.shape[0], 1, x.shape[-2], -1)
            return ramp * self.w

    m = LeftRight()
    x = torch.zeros(3, 16, 16)
    plain = sliding_window_probs(m, x, window=16, overlap=0)
    tta = sliding_window_probs(m, x, window=16, overlap=0, tta=True)
    assert plain[1, 0, -1] > 0.9 and plain[1, 0, 0] < 0.1
    np.testing.assert_allclose(tta[1], 0.5, atol=1e-6)  # p(x) and p(flipped x) average to 1/2
    with pytest.raises(ConfigError, match="C×H×W"):
        sliding_window_probs(m, x[None], 16, 0)


def test_preparation_is_the_independent_arithmetic_and_the_predictor_uses_it() -> None:
    """The one preparation: (x / 255 − mean) / std at the model size, the same inside the predictor."""
    from medattn.bundle import Predictor
    from medattn.data.transforms import Preparation

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    meta = {"input_size": 40, "in_chans": 3, "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3],
            "class_names": ["a", "b"]}
    by_hand = (a.astype(np.float64) / 255 - np.array(meta["mean"])) / np.array(meta["std"])
    prep = Preparation.from_meta(meta)
    np.testing.assert_allclose(prep(a).permute(1, 2, 0).numpy(), by_hand, atol=1e-5)
    p = Predictor(model=nn.Identity(), meta=meta)
    torch.testing.assert_close(prep(a), p.preprocess([a])[0])
    torch.testing.assert_close(prep(a, resize=False), p.prepare_input(a).x[0])
    grey = Preparation.from_meta({**meta, "in_chans": 1, "mean": [0.5], "std": [0.5]})(a[..., 0])
    assert grey.shape == (1, 40, 40)
    np.testing.assert_allclose(grey[0].numpy(), (a[..., 0] / 255 - 0.5) / 0.5, atol=1e-5)
