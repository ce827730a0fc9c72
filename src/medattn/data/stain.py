"""Stain normalisation (Macenko, Reinhard) fitted once, stored as numbers, applied everywhere.

Library: **torch-staintools** (1.0.7, Feb 2026, maintained; Macenko, Reinhard, Vahadane), chosen
over torchstain (1.4.1, Jan 2025). ``benchmarks/stain_libraries.py`` on one CPU thread: Macenko
transform of a 50×50 IDC patch ~5 ms (torchstain ~1.2 ms), of a 256×256 MoNuSeg crop ~41 ms (~24
ms); fit 7 ms / 37 ms (0.6 / 19 ms). torchstain is faster, but its 1.4.1 wheel installs a top-level
``tests`` package into site-packages, which shadows medattn's own ``tests`` package and breaks
test modules that import ``tests.…`` — disqualifying for a core dependency. The speed cost is
small next to a training step (and normalisation runs in DataLoader workers). Fitted state is plain
tensors set back from numbers (Macenko: the 3×2 H&E optical-density matrix and the two
99th-percentile concentrations; Reinhard: LAB means and stds), so bundles stay pickle-free;
``torch.compile`` of the library is turned off (it only speeds up Vahadane's dictionary learning
and would compile in every DataLoader worker). Vahadane is not offered: it is iterative and
randomly initialised, so its per-image source estimate is neither fast nor deterministic on CPU.

Neither library survives a tissue-poor patch (a blank white patch raises in both), so
:class:`StainNormalizer` checks for tissue first: with fewer than :data:`MIN_TISSUE_PIXELS` (or
:data:`MIN_TISSUE_FRACTION` of the pixels) of stained pixels, or when the library fails or gives
out-of-range values, the image is returned unchanged and ``fallbacks`` is incremented.

Reference (``data.stain_reference``): a given image, or by default the element-wise **median of
the per-image parameters** of up to :data:`MAX_REFERENCE_IMAGES` training images (a seeded sample;
tissue-poor images are skipped); the Macenko stain vectors are re-normalised to unit length after
the median. The fitted numbers go into ``bundle.json`` under ``stain_normalization`` and every
consumer rebuilds the normaliser from them with :func:`normalizer_from_meta`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from medattn.errors import BundleError, ConfigError, DataError

__all__ = [
    "STAIN_METHODS", "MIN_TISSUE_PIXELS", "MIN_TISSUE_FRACTION", "MAX_REFERENCE_IMAGES",
    "StainNormalizer", "StainNormalize", "fit_stain_params", "fit_stain_reference",
    "normalizer_from_meta", "has_tissue", "train_files_sha256", "stain_params_for",
]

log = logging.getLogger(__name__)

STAIN_METHODS = ("none", "macenko", "reinhard")
MIN_TISSUE_PIXELS = 16
"""Fewest stained pixels (optical density ≥ ``beta`` in every channel) an image needs."""
MIN_TISSUE_FRACTION = 0.01
"""... and at least this share of the image's pixels."""
MAX_REFERENCE_IMAGES = 64
"""Training images whose parameters are median-pooled into the default reference."""
IO, BETA = 240, 0.15  # tissue check: light intensity and optical-density floor (Macenko's usual values)
LUMINOSITY = 0.8  # the library's tissue mask: pixels darker than this (LAB L in [0, 1])
LIBRARY = "torch-staintools"


def _library_version() -> str:
    from importlib.metadata import version

    return f"{LIBRARY} {version(LIBRARY)}"


def _chw_uint8(img: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``3×H×W`` uint8 tensor of an ``H×W×3`` array or a ``3×H×W`` tensor."""
    if isinstance(img, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(img[..., :3])).permute(2, 0, 1)
    return img


def has_tissue(img: torch.Tensor) -> bool:
    """Whether a ``3×H×W`` uint8 image has enough stained pixels to estimate stains from."""
    od = -torch.log((img.reshape(img.shape[0], -1).float() + 1) / IO)
    n = int((od >= BETA).all(dim=0).sum())
    return n >= max(MIN_TISSUE_PIXELS, MIN_TISSUE_FRACTION * od.shape[1])


class StainNormalizer:
    """Apply fitted stain-normalisation numbers to ``3×H×W`` uint8 images (callable).

    Args:
        params: ``{"method": "macenko", "stain_matrix": 3×2, "max_concentrations": [h, e]}`` or
            ``{"method": "reinhard", "lab_means": [3], "lab_stds": [3]}`` (extra keys are kept).

    Raises:
        BundleError: unknown method or numbers of the wrong shape.
    """

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = dict(params)
        self.method = str(params.get("method"))
        self.fallbacks = 0
        self.calls = 0
        try:
            if self.method == "macenko":
                he = torch.tensor(params["stain_matrix"], dtype=torch.float32)
                mc = torch.tensor(params["max_concentrations"], dtype=torch.float32)
                if he.shape != (3, 2) or mc.shape != (2,):
                    raise ValueError("shapes")
                self._norm = _build("macenko")
                self._norm.register_buffer("stain_matrix_target", he.T[None].contiguous())
                self._norm.register_buffer("maxC_target", mc[None])
            elif self.method == "reinhard":
                means = torch.tensor(params["lab_means"], dtype=torch.float32)
                stds = torch.tensor(params["lab_stds"], dtype=torch.float32)
                if means.shape != (3,) or stds.shape != (3,):
                    raise ValueError("shapes")
                self._norm = _build("reinhard")
                self._norm.register_buffer("target_means", means.view(1, 3, 1, 1))
                self._norm.register_buffer("target_stds", stds.view(1, 3, 1, 1))
            else:
                raise BundleError(f"stain_normalization.method '{self.method}' is not macenko or reinhard; "
                                  "re-save the bundle with medattn")
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"stain_normalization numbers for '{self.method}' are malformed ({exc}); "
                              "re-save the bundle with medattn") from None

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        """Normalised copy of a ``3×H×W`` uint8 image (the image itself when it has too little
        tissue or the library fails; counted in ``fallbacks``)."""
        self.calls += 1
        if img.ndim != 3 or img.shape[0] != 3:
            return img
        x = img.as_subclass(torch.Tensor)
        if has_tissue(x):
            try:
                out = self._norm.transform(x[None].float() / 255)[0]
                if bool(torch.isfinite(out).all()):
                    return (out * 255).round().clamp(0, 255).to(torch.uint8)
            except Exception:  # noqa: BLE001 - TissueMaskException, singular solves: keep the image
                pass
        self.fallbacks += 1
        if self.fallbacks == 1:
            log.info("stain normalisation: an image with too little tissue was left unchanged")
        return x

    def to_dict(self) -> dict[str, Any]:
        """The numbers (JSON-ready), as stored in ``bundle.json``."""
        return dict(self.params)


class StainNormalize(v2.Transform):
    """torchvision v2 transform: stain-normalise RGB images (uint8, or float in [0, 1] which is
    quantised to 8 bits first); masks and non-RGB inputs pass unchanged. Deterministic."""

    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__()
        self.normalizer = StainNormalizer(params)

    def transform(self, inpt: torch.Tensor, params: dict) -> torch.Tensor:  # noqa: D102
        if isinstance(inpt, tv_tensors.Mask) or inpt.ndim != 3 or inpt.shape[-3] != 3:
            return inpt
        flt = inpt.is_floating_point()
        x = (inpt * 255).round().clamp(0, 255).to(torch.uint8) if flt else inpt
        out = self.normalizer(x.as_subclass(torch.Tensor))
        out = out.float() / 255 if flt else out
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out


def _build(method: str) -> Any:
    """A torch-staintools normaliser (deterministic: QR concentrations, no torch.compile)."""
    from torch_staintools.constants import CONFIG
    from torch_staintools.normalizer import NormalizerBuilder

    CONFIG.ENABLE_COMPILE = False
    if method == "macenko":
        return NormalizerBuilder.build("macenko", concentration_solver="qr", luminosity_threshold=LUMINOSITY)
    return NormalizerBuilder.build("reinhard", luminosity_threshold=LUMINOSITY)


def normalizer_from_meta(meta: dict[str, Any]) -> StainNormalizer | None:
    """The normaliser of a bundle (``meta["stain_normalization"]``), or ``None`` when it has none."""
    sn = meta.get("stain_normalization")
    if not sn or sn.get("method", "none") == "none":
        return None
    if not isinstance(sn, dict):
        raise BundleError("bundle.json field 'stain_normalization': expected a mapping; re-save the bundle")
    return StainNormalizer(sn)


def _params_of(method: str, img: torch.Tensor) -> dict[str, Any] | None:
    """One image's parameters, or ``None`` when it has too little tissue or the fit fails."""
    if not has_tissue(img):
        return None
    try:
        n = _build(method)
        n.fit(img[None].float() / 255)
        if method == "macenko":
            he, mc = n.stain_matrix_target[0].T.float(), n.maxC_target[0].float()
            ok = bool(torch.isfinite(he).all() and torch.isfinite(mc).all() and (mc > 0).all())
            return {"stain_matrix": he.tolist(), "max_concentrations": mc.tolist()} if ok else None
        m, s = n.target_means.flatten().float(), n.target_stds.flatten().float()
        ok = bool(torch.isfinite(m).all() and torch.isfinite(s).all() and (s > 0).all())
        return {"lab_means": m.tolist(), "lab_stds": s.tolist()} if ok else None
    except Exception:  # noqa: BLE001 - TissueMaskException, singular solves: skip the image
        return None


def fit_stain_params(method: str, images: Iterable[np.ndarray | torch.Tensor]) -> dict[str, Any]:
    """Median of the per-image parameters of ``images`` (``H×W×3`` arrays or ``3×H×W`` uint8).

    Returns:
        The numbers of :class:`StainNormalizer` plus ``library``, ``images_used`` and
        ``images_skipped`` (tissue-poor or failed fits).

    Raises:
        ConfigError: unknown method; DataError: no image had enough tissue.
    """
    if method not in STAIN_METHODS[1:]:
        raise ConfigError(f"field 'data.stain_normalize': '{method}' is not one of {', '.join(STAIN_METHODS)}")
    fits, skipped = [], 0
    for img in images:
        p = _params_of(method, _chw_uint8(img))
        if p is None:
            skipped += 1
        else:
            fits.append(p)
    if not fits:
        raise DataError(f"stain normalisation: none of the {skipped} reference image(s) has enough tissue "
                        "to fit on; set data.stain_reference to an H&E image or data.stain_normalize: none")
    out: dict[str, Any] = {"method": method}
    for key in fits[0]:
        out[key] = np.median(np.asarray([f[key] for f in fits], dtype=np.float64), axis=0)
    if method == "macenko":  # stain vectors are directions: back to unit length after the median
        he = out["stain_matrix"]
        out["stain_matrix"] = he / np.linalg.norm(he, axis=0, keepdims=True)
    out = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in out.items()}
    out.update({"library": _library_version(), "images_used": len(fits), "images_skipped": skipped})
    out["luminosity_threshold"] = LUMINOSITY
    return out


def train_files_sha256(files: Sequence[str]) -> str:
    """SHA-256 of the sorted training file names (which training split a fit came from)."""
    return hashlib.sha256("\n".join(sorted(map(str, files))).encode()).hexdigest()


def fit_stain_reference(method: str, root: str | Path, train_files: Sequence[str], *,
                        reference: str | None = None, max_images: int = MAX_REFERENCE_IMAGES,
                        seed: int = 0) -> dict[str, Any]:
    """Fit the normaliser on ``reference`` (an image path) or on a seeded sample of up to
    ``max_images`` of ``train_files`` (items under ``root``, read as the format adapters do).

    Raises:
        ConfigError: the reference image cannot be read, or there are no training files.
    """
    from medattn.data.formats.registry import read_item
    from medattn.data.images import read_image

    if reference is not None:
        try:
            img = read_image(Path(reference).expanduser())
        except (OSError, DataError) as exc:
            raise ConfigError(f"field 'data.stain_reference': cannot read '{reference}' ({str(exc)[:120]}); "
                              "give an RGB H&E image path or leave it empty") from None
        out = fit_stain_params(method, [img])
        out["reference"] = str(reference)
        return out
    if not len(train_files):
        raise ConfigError("field 'data.stain_normalize': no training items to fit the stain reference on; "
                          "set data.stain_reference to an image")
    rng = np.random.default_rng(seed)
    files = list(train_files)
    pick = sorted(rng.choice(len(files), size=min(max_images, len(files)), replace=False).tolist())
    imgs = (np.asarray(read_item(root, files[i])) for i in pick)
    out = fit_stain_params(method, (a if a.ndim == 3 else np.stack([a] * 3, -1) for a in imgs))
    out["reference"] = f"median of {len(pick)} training images"
    out["train_sha256"] = train_files_sha256(files)
    return out


def stain_params_for(cfg: Any, root: str | Path, table: Any, *, seed: int = 0) -> dict[str, Any] | None:
    """The numbers a run uses: ``cfg.stain_fitted`` (a recipe's ``data`` section) when they match
    its method and reference (or training split: ``table`` rows with ``split == "train"``; a table
    without training rows, as in external evaluation, keeps them), else a new fit."""
    method = cfg.stain_normalize
    if method == "none":
        return None
    have = cfg.stain_fitted
    train = table.loc[table["split"] == "train", "file"].astype(str).tolist()
    if have and have.get("method") == method:
        ref = cfg.stain_reference
        if ref is not None and have.get("reference") == str(ref):
            return have
        if ref is None and have.get("train_sha256") and (not train or have["train_sha256"] == train_files_sha256(train)):
            return have
    out = fit_stain_reference(method, root, train, reference=cfg.stain_reference, seed=seed)
    log.info("stain normalisation (%s) fitted on %s: %d used, %d skipped", method, out["reference"],
             out["images_used"], out["images_skipped"])
    return out
