from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from medattn.data.transforms import (
    CytologyEnhance,
    HEDJitter,
    PairedTransform,
    build_transforms,
)


def _img(c=3, h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (c, h, w), dtype=torch.uint8, generator=g)


def test_augmentation_is_random_every_call():
    tf = build_transforms("histo", train=True)
    x = _img()
    outs = {tuple(tf(x).flatten()[:50].tolist()) for _ in range(12)}
    assert len(outs) > 1  # drawn anew each call, never cached


def test_eval_pipeline_is_deterministic_and_normalised():
    tf = build_transforms("histo", train=False, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    x = _img()
    a, b = tf(x), tf(x)
    assert torch.equal(a, b)
    assert torch.allclose(a, x.float() / 255 * 2 - 1, atol=1e-6)


def test_hed_jitter_identity_at_zero_and_stays_in_range():
    x = torch.rand(3, 16, 16) * 0.9 + 0.05
    assert torch.allclose(HEDJitter(sigma=0.0, bias=0.0)(x), x, atol=1e-4)
    y = HEDJitter(sigma=0.2, bias=0.05)(x)
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1
    assert not torch.allclose(y, x)
    m = tv_tensors.Mask(torch.ones(16, 16, dtype=torch.uint8))
    assert torch.equal(HEDJitter()(m), m)


def test_channels_follow_the_one_decoder_rule():
    """A one-channel bundle sees the decoder's luminance (ITU-R 601), in training and at inference."""
    from medattn.data.transforms import Preparation
    from medattn.decode import as_image_array

    rgb = _img(3).permute(1, 2, 0).numpy()
    prep = Preparation(size=24, mean=(0.5,), std=(0.25,), channels=1)
    x = prep(rgb)
    assert x.shape == (1, 24, 24)
    lum = as_image_array(rgb, "L")
    ref = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2] + 0.5).astype(np.uint8)
    assert np.array_equal(lum, ref)
    torch.testing.assert_close(x, prep(lum))  # an RGB image and its luminance are the same input
    g = prep(lum[..., None].repeat(3, 2))  # a grey image stored as RGB
    torch.testing.assert_close(g, x)
    tf = build_transforms("cxr", train=True, size=24, mean=(0.5,), std=(0.25,))
    assert tf(torch.from_numpy(lum)[None]).shape == (1, 24, 24)


def test_cytology_enhance_denoises_and_equalises():
    rng = np.random.default_rng(0)
    clean = np.tile(np.linspace(60, 120, 48, dtype=np.float64), (48, 1))
    noisy = np.clip(clean + rng.normal(0, 20, clean.shape), 0, 255).astype(np.uint8)
    x = torch.from_numpy(np.stack([noisy] * 3))
    den = CytologyEnhance(denoise=True, clahe=False)(x).float()
    assert (den[0] - torch.from_numpy(clean)).abs().mean() < (x[0].float() - torch.from_numpy(clean)).abs().mean()
    eq = CytologyEnhance(denoise=False, clahe=True)(x)
    assert eq.float().std() > x.float().std()  # contrast stretched
    tf = build_transforms("cytology", train=False, denoise=True, clahe=True)
    assert tf(x).shape == (3, 48, 48)


def test_paired_transform_moves_mask_with_image():
    tf = PairedTransform(build_transforms("histo", train=True, mean=(0, 0, 0), std=(1, 1, 1)))
    img = torch.zeros(3, 16, 16, dtype=torch.uint8)
    img[:, :4, :4] = 255
    mask = torch.zeros(16, 16, dtype=torch.uint8)
    mask[:4, :4] = 1
    for _ in range(8):
        x, m = tf(img, mask)
        assert torch.equal(x[0] > 0.5, m.bool())


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown transform preset"):
        build_transforms("xray", train=True)


def test_preparation_steps_are_the_visible_deterministic_steps():
    from medattn.data.transforms import Preparation

    prep = Preparation(size=24, mean=[0.5] * 3, std=[0.25] * 3, preset="cytology", denoise=True, clahe=True)
    img = np.random.default_rng(0).integers(0, 256, (40, 32, 3), dtype=np.uint8)
    steps = prep.steps(img)
    assert [n for n, _ in steps] == ["input", "denoised + CLAHE", "resized to 24×24"]
    assert steps[0][1].shape == (40, 32, 3) and steps[-1][1].shape == (24, 24, 3)
    assert all(a.dtype == np.uint8 for _, a in steps)
    # the last step is what the tensor of prep() is made from
    want = prep(img)
    got = (torch.from_numpy(steps[-1][1]).permute(2, 0, 1).float() / 255 - 0.5) / 0.25
    assert torch.allclose(want, got, atol=1e-5)
    # tiles keep their own size: no resize step
    assert [n for n, _ in prep.steps(img, resize=False)] == ["input", "denoised + CLAHE"]
    grey = Preparation(size=24, mean=[0.5], std=[0.25], channels=1).steps(img[..., 0])
    assert [a.shape for _, a in grey] == [(40, 32), (24, 24)]
