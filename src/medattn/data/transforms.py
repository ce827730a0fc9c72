"""Augmentation and preprocessing presets (torchvision.transforms.v2), random at every call.

Every preset takes a ``uint8`` CHW tensor (optionally with a mask) and returns a normalised
float tensor. Augmentation is applied inside ``__getitem__``, so it is drawn anew every epoch
and never cached.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

__all__ = ["RandomRot90", "build_transforms", "IMAGENET_MEAN", "IMAGENET_STD", "PairedTransform"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class RandomRot90(v2.Transform):
    """Rotate by a random multiple of 90° (images and masks alike)."""

    def make_params(self, flat_inputs: list) -> dict:  # noqa: D102
        return {"k": int(torch.randint(0, 4, ()).item())}

    def transform(self, inpt: torch.Tensor, params: dict) -> torch.Tensor:  # noqa: D102
        if params["k"] == 0:
            return inpt
        out = torch.rot90(inpt, params["k"], dims=(-2, -1))
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out


def build_transforms(
    preset: str = "histo",
    *,
    train: bool,
    size: int | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """Preset pipeline.

    Args:
        preset: ``histo`` (flips, 90° rotations, light colour jitter), ``cytology``, ``cxr`` or
            ``none`` (resize + normalise only).
        train: include random augmentation.
        size: square output size (``None`` keeps the input size).
        mean, std: normalisation, stored with a bundle so inference matches training.
    """
    ops: list[v2.Transform] = []
    if size is not None:
        ops.append(v2.Resize((size, size), antialias=True))
    if train and preset == "histo":
        ops += [
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            RandomRot90(),
            v2.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1, hue=0.03),
        ]
    elif train and preset == "cytology":
        ops += [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(), RandomRot90(),
                v2.ColorJitter(brightness=0.1, contrast=0.1)]
    elif train and preset == "cxr":
        ops += [v2.RandomAffine(degrees=5, translate=(0.03, 0.03), scale=(0.95, 1.05)),
                v2.ColorJitter(brightness=0.1, contrast=0.1)]
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]
    return v2.Compose(ops)


class PairedTransform:
    """Apply one v2 pipeline to an image and its mask together (the mask is not normalised)."""

    def __init__(self, pipeline: v2.Compose) -> None:
        self.pipeline = pipeline

    def __call__(self, img: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out_img, out_mask = self.pipeline(tv_tensors.Image(img), tv_tensors.Mask(mask))
        return out_img.as_subclass(torch.Tensor), out_mask.as_subclass(torch.Tensor)
