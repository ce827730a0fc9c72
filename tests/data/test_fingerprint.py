"""Orientation-, crop-, scale- and colour-robust fingerprints: planted copies are found and verified."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from medattn.data import fingerprint as F


def _images(n: int = 40, size: int = 64) -> list[np.ndarray]:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        tex = gaussian_filter(rng.normal(size=(size, size)), 2.0) * 60  # channels share the structure,
        x = tex[..., None] * rng.uniform(0.5, 1.2, 3) + rng.uniform(90, 170, 3)  # like stained tissue
        out.append(np.clip(x, 0, 255).astype(np.uint8))
    return out


TRANSFORMS = {
    "flip": lambda im: im.transpose(Image.FLIP_LEFT_RIGHT),
    "rot90": lambda im: im.transpose(Image.ROTATE_90),
    "rot180": lambda im: im.transpose(Image.ROTATE_180),
    "crop": lambda im: im.crop((0, 0, int(im.width * 0.85), int(im.height * 0.85))),
    "rescale": lambda im: im.resize((im.width * 3 // 2, im.height * 3 // 2), Image.BICUBIC),
    "recolour": lambda im: Image.fromarray(np.asarray(im)[..., ::-1].copy()),
    "saturation": lambda im: ImageEnhance.Color(im).enhance(0.4),
    "greyscale": lambda im: im.convert("L").convert("RGB"),
}


def test_dihedral_hashes_match_the_transformed_images() -> None:
    t = F.thumbs_of(np.stack([F.base_thumbnail(a) for a in _images(3)]))
    h = F.dihedral_hashes(t)
    for g in range(8):
        hg = F.dihedral_hashes(np.ascontiguousarray(F.apply_dihedral(t, g)))[:, 0]
        assert np.array_equal(hg, h[:, g]), F.DIHEDRAL[g]


@pytest.mark.parametrize("kind", sorted(TRANSFORMS))
def test_planted_copy_is_a_verified_candidate(kind: str) -> None:
    imgs = _images()
    copy = np.asarray(TRANSFORMS[kind](Image.fromarray(imgs[7])).convert("RGB"))
    bases = np.stack([F.base_thumbnail(a) for a in [*imgs, copy]])
    splits = np.array(["train"] * len(imgs) + ["test"])
    found = {(min(c[0], c[1]), max(c[0], c[1])): F.verify(bases, c) for c in F.near_candidates(bases, splits)}
    corr, detail = found[(7, len(imgs))]
    assert corr >= 0.95 and detail >= 0.9, (corr, detail)
    others = [v for k, v in found.items() if k != (7, len(imgs))]
    assert all(c < 0.9 for c, _ in others)  # unrelated textures are not copies
