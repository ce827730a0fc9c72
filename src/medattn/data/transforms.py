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

__all__ = [
    "RandomRot90", "HEDJitter", "CytologyEnhance", "build_transforms", "Preparation", "prepare",
    "IMAGENET_MEAN", "IMAGENET_STD", "PairedTransform",
]

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


# Stain vectors of haematoxylin, eosin and DAB in optical-density space (Ruifrok & Johnston 2001),
# rows normalised; the matrix maps HED concentrations to RGB optical density.
_HED_TO_OD = torch.tensor([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
_HED_TO_OD = _HED_TO_OD / _HED_TO_OD.norm(dim=1, keepdim=True)
_OD_TO_HED = torch.linalg.inv(_HED_TO_OD)


class HEDJitter(v2.Transform):
    """Stain augmentation: scale and shift each H, E, D concentration of a float RGB image.

    The image (values in [0, 1], C×H×W) is converted to optical density, unmixed into stain
    concentrations, perturbed by ``c·(1+α) + β`` with ``α ~ U(−sigma, sigma)`` and
    ``β ~ U(−bias, bias)`` per stain, and mixed back. Masks and non-RGB inputs pass unchanged.

    Args:
        sigma: range of the multiplicative perturbation.
        bias: range of the additive perturbation (optical-density units).
    """

    def __init__(self, sigma: float = 0.05, bias: float = 0.02) -> None:
        super().__init__()
        self.sigma = sigma
        self.bias = bias

    def make_params(self, flat_inputs: list) -> dict:  # noqa: D102
        return {"alpha": 1 + (torch.rand(3) * 2 - 1) * self.sigma, "beta": (torch.rand(3) * 2 - 1) * self.bias}

    def transform(self, inpt: torch.Tensor, params: dict) -> torch.Tensor:  # noqa: D102
        if isinstance(inpt, tv_tensors.Mask) or inpt.ndim < 3 or inpt.shape[-3] != 3 or not inpt.is_floating_point():
            return inpt
        od = -torch.log(inpt.clamp(1e-4, 1.0)).movedim(-3, -1)
        hed = od @ _OD_TO_HED.to(od)
        hed = hed * params["alpha"].to(od) + params["beta"].to(od)
        out = torch.exp(-(hed @ _HED_TO_OD.to(od))).clamp(0, 1).movedim(-1, -3)
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out


class CytologyEnhance(v2.Transform):
    """Deterministic cytology preprocessing on ``uint8`` images: non-local-means denoising and
    CLAHE (contrast-limited adaptive histogram equalisation), both from scikit-image, as in the
    cervical-cell pipelines. Masks pass unchanged.
    """

    def __init__(self, denoise: bool = True, clahe: bool = True, clip_limit: float = 0.01) -> None:
        super().__init__()
        self.denoise = denoise
        self.clahe = clahe
        self.clip_limit = clip_limit

    def transform(self, inpt: torch.Tensor, params: dict) -> torch.Tensor:  # noqa: D102
        if isinstance(inpt, tv_tensors.Mask) or inpt.dtype != torch.uint8 or inpt.ndim != 3:
            return inpt
        import numpy as np
        from skimage import exposure, restoration

        img = inpt.permute(1, 2, 0).numpy().astype(np.float64) / 255.0
        multi = img.shape[2] > 1
        if self.denoise:
            sig = float(np.mean(restoration.estimate_sigma(img, channel_axis=-1 if multi else None)))
            img = restoration.denoise_nl_means(img, h=0.8 * sig, sigma=sig, fast_mode=True, patch_size=5,
                                               patch_distance=6, channel_axis=-1 if multi else None)
            if not multi:
                img = img[..., None]
        if self.clahe:
            img = exposure.equalize_adapthist(np.clip(img, 0, 1), clip_limit=self.clip_limit)
            if img.ndim == 2:
                img = img[..., None]
        out = torch.from_numpy((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)).permute(2, 0, 1)
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out


class Contiguous(v2.Transform):
    """Make images contiguous ``C×H×W``: the uint8 antialiased resize rounds differently on a
    channels-last view than on a contiguous tensor, so every input gets one memory layout."""

    def transform(self, inpt: torch.Tensor, params: dict) -> torch.Tensor:  # noqa: D102
        if inpt.is_contiguous():
            return inpt
        out = inpt.as_subclass(torch.Tensor).contiguous()
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out


def _deterministic_ops(preset: str, size: int | tuple[int, int] | None, stain: dict | None, denoise: bool,
                       clahe: bool) -> list[v2.Transform]:
    """The steps every image goes through, in training and at inference alike, on ``uint8``:
    stain normalisation at the image's own scale → cytology enhancement → resize."""
    ops: list[v2.Transform] = [Contiguous()]
    if stain and stain.get("method", "none") != "none":
        from medattn.data.stain import StainNormalize

        ops.append(StainNormalize(stain))
    if preset == "cytology" and (denoise or clahe):
        ops.append(CytologyEnhance(denoise=denoise, clahe=clahe))
    if size is not None:
        hw = (int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[1]))
        ops.append(v2.Resize(hw, antialias=True))
    return ops


def build_transforms(
    preset: str = "histo",
    *,
    train: bool,
    size: int | tuple[int, int] | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    stain_jitter: bool = False,
    stain_range: tuple[float, float] = (0.05, 0.02),
    denoise: bool = False,
    clahe: bool = False,
    stain: dict | None = None,
) -> v2.Compose:
    """Preset pipeline; with ``train=False`` it is exactly :meth:`Preparation.transform`.

    Args:
        preset: ``histo`` (flips, 90° rotations, light colour jitter, optional HED stain
            jitter), ``cytology`` (flips, rotations, light jitter; optional NLM denoising and
            CLAHE applied in training *and* evaluation), ``cxr`` (small affine, contrast) or
            ``none`` (resize + normalise only).
        train: include random augmentation.
        size: square output size, or ``(height, width)`` (``None`` keeps the input size).
        mean, std: normalisation, stored with a bundle so inference matches training; one value
            per channel of the input (grey images are decoded with one channel, by the decoder's
            luminance rule, :func:`medattn.decode.read_image`).
        stain_jitter: histo only: add :class:`HEDJitter` in training.
        stain_range: ``(sigma, bias)`` of the HED jitter.
        denoise, clahe: cytology only: :class:`CytologyEnhance` steps.
        stain: fitted stain-normalisation numbers (:mod:`medattn.data.stain`), applied to the
            ``uint8`` image before resizing and augmentation, in training and evaluation alike.
    """
    if preset not in ("histo", "cytology", "cxr", "none"):
        raise ValueError(f"unknown transform preset '{preset}'; use histo, cytology, cxr or none")
    if len(mean) != len(std):
        raise ValueError(f"mean has {len(mean)} values but std has {len(std)}; give one per channel")
    ops: list[v2.Transform] = _deterministic_ops(preset, size, stain, denoise, clahe)
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
    ops.append(v2.ToDtype(torch.float32, scale=True))
    if train and preset == "histo" and stain_jitter:
        ops.append(HEDJitter(*stain_range))
    ops.append(v2.Normalize(mean=list(mean), std=list(std)))
    return v2.Compose(ops)


class Preparation:
    """The one image → model-tensor step, built from a bundle's metadata (or a recipe's data
    section): the deterministic part of the training pipeline, in training's order — stain
    normalisation at the image's own scale → cytology enhancement → resize → float → normalise.

    ``prep(image)`` takes a decoded ``uint8`` image (``H×W×C``/``H×W`` array, or ``C×H×W`` uint8
    tensor) and returns a ``C×H×W`` float tensor. ``resize=False`` keeps the image's own size
    (tiles, slide regions at the model's scale, segmentation fields of view). The training
    evaluation transform is :meth:`transform` of the same object, so training and every door
    compute the same tensor by construction.
    """

    def __init__(self, *, size: int | tuple[int, int] | None, mean: Sequence[float], std: Sequence[float],
                 channels: int = 3, stain: dict | None = None, preset: str = "none", denoise: bool = False,
                 clahe: bool = False) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.size = None if size is None else (
            (int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[1])))
        self.mean, self.std = [float(v) for v in mean][:channels], [float(v) for v in std][:channels]
        self.channels, self.preset = int(channels), str(preset)
        self.stain = stain if stain and stain.get("method", "none") != "none" else None
        self.denoise, self.clahe = bool(denoise), bool(clahe)
        self._tf: dict[tuple[int, int] | None, v2.Compose] = {}

    def __getstate__(self) -> dict:  # DataLoader workers rebuild the transforms
        return {**self.__dict__, "_tf": {}}

    @classmethod
    def from_meta(cls, meta: dict) -> Preparation:
        """From ``bundle.json``: ``input_size``, ``in_chans``, ``mean``, ``std``,
        ``stain_normalization`` and ``preparation`` (preset, denoise, clahe; older bundles: the
        recipe's ``data`` section). Segmentation bundles never resize (they tile)."""
        prep = dict(meta.get("preparation") or {})
        data = ((meta.get("recipe") or {}).get("data") or {})
        seg = meta.get("task") == "segmentation"
        return cls(size=None if seg else meta["input_size"], mean=meta["mean"], std=meta["std"],
                   channels=1 if int(meta.get("in_chans", 3)) == 1 else 3,
                   stain=meta.get("stain_normalization"),
                   preset=str(prep.get("preset", data.get("augment", "none"))),
                   denoise=bool(prep.get("denoise", data.get("denoise", False))),
                   clahe=bool(prep.get("clahe", data.get("clahe", False))))

    def as_meta(self) -> dict:
        """What ``bundle.json`` stores under ``preparation`` besides size, mean, std and stain."""
        return {"preset": self.preset, "denoise": self.denoise, "clahe": self.clahe,
                "order": [s for s, on in (("stain", self.stain is not None),
                                          ("denoise", self.preset == "cytology" and self.denoise),
                                          ("clahe", self.preset == "cytology" and self.clahe),
                                          ("resize", self.size is not None), ("to_float", True),
                                          ("normalise", True)) if on]}

    def transform(self, resize: bool = True, size: tuple[int, int] | None = None) -> v2.Compose:
        """The evaluation transform (``uint8`` ``C×H×W`` tensor → normalised float): resized to the
        model input (``resize``), to ``size`` (``(height, width)``, e.g. a slide block at the model's
        scale), or not at all."""
        key = size if size is not None else (self.size if resize else None)
        if key not in self._tf:
            self._tf[key] = build_transforms(self.preset if self.preset in ("histo", "cytology", "cxr") else "none",
                                             train=False, size=key, mean=self.mean, std=self.std,
                                             denoise=self.denoise, clahe=self.clahe, stain=self.stain)
        return self._tf[key]

    def steps(self, image, *, resize: bool = True) -> list[tuple[str, object]]:  # noqa: ANN001
        """``(name, uint8 H×W×C image)`` after each deterministic step, for showing what the model
        sees (the dashboard's preparation panel): input, stain normalisation, cytology enhancement,
        resize (``resize=False``: tiles and segmentation fields of view, which keep their own size)."""
        import numpy as np

        names = {"StainNormalize": "stain normalised", "CytologyEnhance": "denoised + CLAHE",
                 "Resize": f"resized to {self.size[1]}×{self.size[0]}" if self.size else "resized"}
        t = self.to_uint8_tensor(image)
        out = [("input", t)]
        for op in _deterministic_ops(self.preset, self.size if resize else None, self.stain, self.denoise,
                                     self.clahe):
            before, t = t, op(t)
            if isinstance(op, Contiguous):  # a memory layout, not a step a person sees
                continue
            if type(op).__name__ == "Resize" and tuple(before.shape[-2:]) == tuple(t.shape[-2:]):
                continue  # already at the model's size: nothing was resized
            out.append((names.get(type(op).__name__, type(op).__name__), t))
        return [(n, np.ascontiguousarray(v.permute(1, 2, 0).numpy().squeeze(-1) if v.shape[0] == 1
                                          else v.permute(1, 2, 0).numpy())) for n, v in out]

    def to_uint8_tensor(self, image) -> torch.Tensor:  # noqa: ANN001
        """``uint8`` ``C×H×W`` tensor with this preparation's channels from a decoded image."""
        import numpy as np

        if isinstance(image, torch.Tensor):
            if image.dtype != torch.uint8 or image.ndim != 3:
                raise ValueError(f"expected a uint8 C×H×W tensor, got {image.dtype} {tuple(image.shape)}")
            image = image.permute(1, 2, 0).numpy()
        from medattn.decode import as_image_array

        a = as_image_array(np.asarray(image), "L" if self.channels == 1 else "RGB")
        return torch.from_numpy(np.ascontiguousarray(a[None] if a.ndim == 2 else a.transpose(2, 0, 1)))

    def __call__(self, image, *, resize: bool = True, size: tuple[int, int] | None = None) -> torch.Tensor:  # noqa: ANN001
        t = self.to_uint8_tensor(image)
        if size is not None and tuple(size) == tuple(t.shape[-2:]):
            size, resize = None, False
        return self.transform(resize, size)(t)

    def batch(self, images, *, resize: bool = True) -> torch.Tensor:  # noqa: ANN001
        """``B×C×H×W`` of several images (the same size after preparation)."""
        return torch.stack([self(im, resize=resize) for im in images])


def prepare(meta: dict, image, *, resize: bool = True) -> torch.Tensor:  # noqa: ANN001
    """``C×H×W`` float tensor of one decoded image, prepared as the bundle ``meta`` says
    (:class:`Preparation`; build one and reuse it for many images)."""
    return Preparation.from_meta(meta)(image, resize=resize)


class PairedTransform:
    """Apply one v2 pipeline to an image and its mask together (the mask is not normalised)."""

    def __init__(self, pipeline: v2.Compose) -> None:
        self.pipeline = pipeline

    def __call__(self, img: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out_img, out_mask = self.pipeline(tv_tensors.Image(img), tv_tensors.Mask(mask))
        return out_img.as_subclass(torch.Tensor), out_mask.as_subclass(torch.Tensor)
