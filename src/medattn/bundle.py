"""Model bundles: ``model.safetensors`` + ``bundle.json`` that carry their own preprocessing.

A bundle is a folder (or a ``.zip`` of one). Loading never unpickles anything: weights come from
safetensors, the architecture is rebuilt from the registry by name and arguments, and the
weights' sha256 must match ``bundle.json`` (tampered weights are refused).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medattn import __version__
from medattn.bundle_meta import check_bundle_meta
from medattn.decode import (  # re-exported: the bundle API reads images too
    DEFAULT_MAX_PIXELS,
    IMAGE_FORMATS,
    ImageTooLargeError,
    UnsupportedImageError,
    read_dicom,
    read_image,
    sniff_format,
    to_uint8,
)
from medattn.errors import BundleError, DataError, MedattnError
from medattn.io import atomic_dir, atomic_path, to_jsonable

__all__ = [
    "save_bundle", "load_bundle", "read_bundle_files", "Predictor", "BUNDLE_FORMAT", "TASKS",
    "IMAGE_FORMATS", "DEFAULT_MAX_PIXELS", "ImageTooLargeError", "UnsupportedImageError",
    "sniff_format", "read_image", "read_dicom", "main_output",
]

BUNDLE_FORMAT = 1
_REQUIRED = ("architecture", "class_names", "input_size", "in_chans", "mean", "std", "weights_sha256")
TASKS = ("binary", "multiclass", "multilabel", "segmentation")
_MAX_WEIGHTS = 4 << 30  # refuse zip members that would inflate beyond 4 GiB


def _weights_bytes(model: nn.Module) -> bytes:
    from safetensors.torch import save

    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return save(sd)


def save_bundle(model: nn.Module, meta: dict[str, Any], path: str | Path) -> Path:
    """Write a bundle folder (or ``.zip`` when ``path`` ends with it) atomically.

    Args:
        model: a model built by :func:`medattn.models.create_model`.
        meta: ``class_names`` (in output order), ``input_size``, ``in_chans``, ``mean``, ``std``,
            and optionally ``task``, ``threshold``, ``metrics``, ``recipe``, ``split_hash``.
    """
    from medattn.models import model_spec

    spec = model_spec(model)
    missing = [k for k in ("class_names", "input_size", "in_chans", "mean", "std") if k not in meta]
    if missing:
        raise BundleError(f"bundle metadata lacks {', '.join(missing)}")
    if meta.get("task", "binary") not in TASKS:
        raise BundleError(f"bundle task '{meta.get('task')}' is not one of {', '.join(TASKS)}")
    weights = _weights_bytes(model)
    doc = {
        "format": BUNDLE_FORMAT,
        "medattn_version": __version__,
        "architecture": {"name": spec["name"], "kwargs": spec["kwargs"]},
        "task": meta.get("task", "binary"),
        **{k: v for k, v in meta.items() if k != "task"},
        "weights_file": "model.safetensors",
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
    }
    if "card" not in doc:  # model card (intended use, data, evaluation, limitations): medattn.trust.card
        from medattn.trust.card import build_card

        doc["card"] = build_card(doc)
    text = json.dumps(to_jsonable(doc), indent=2) + "\n"
    target = Path(path)
    if target.suffix == ".zip":
        with atomic_path(target) as tmp:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
                zf.writestr("bundle.json", text)
                zf.writestr("model.safetensors", weights)
    else:
        with atomic_dir(target) as tmp:
            (tmp / "model.safetensors").write_bytes(weights)
            (tmp / "bundle.json").write_text(text)
    return target


def read_bundle_files(path: str | Path) -> tuple[dict[str, Any], bytes]:
    """``(bundle.json as dict, weights bytes)`` from a folder or zip, validated."""
    p = Path(path)
    try:
        if p.is_dir():
            jf, wf = p / "bundle.json", p / "model.safetensors"
            if not jf.is_file():
                raise BundleError(f"'{p}' is not a bundle: bundle.json is missing")
            meta_text, weights = jf.read_text(), (wf.read_bytes() if wf.is_file() else None)
        elif p.is_file() and zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as zf:
                names = set(zf.namelist())
                if "bundle.json" not in names:
                    raise BundleError(f"'{p}' is not a bundle: bundle.json is missing from the zip")
                sizes = {i.filename: i.file_size for i in zf.infolist()}
                if sizes["bundle.json"] > 16 << 20 or sizes.get("model.safetensors", 0) > _MAX_WEIGHTS:
                    raise BundleError(f"'{p}' holds members too large for a bundle; refusing to inflate it")
                meta_text = zf.read("bundle.json").decode("utf-8")
                weights = zf.read("model.safetensors") if "model.safetensors" in names else None
        elif p.exists():
            raise BundleError(f"'{p}' is not a bundle folder or .zip; pass the folder written by medattn")
        else:
            raise BundleError(f"bundle '{p}' not found")
    except (OSError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
        raise BundleError(f"cannot read bundle '{p}': {exc}") from None
    try:
        meta = json.loads(meta_text)
    except json.JSONDecodeError as exc:
        raise BundleError(f"'{p}/bundle.json' is not valid JSON ({exc})") from None
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise BundleError(f"'{p}/bundle.json' lacks {', '.join(missing)}")
    if weights is None:
        raise BundleError(f"'{p}' has no model.safetensors")
    check_bundle_meta(meta, str(p))  # one line naming a malformed field
    digest = hashlib.sha256(weights).hexdigest()
    if digest != meta["weights_sha256"]:
        raise BundleError(
            f"'{p}' weights do not match bundle.json (sha256 {digest[:12]}… ≠ {str(meta['weights_sha256'])[:12]}…); "
            "the bundle was modified or corrupted: re-export it"
        )
    return meta, weights


def _build_model(meta: dict[str, Any], weights: bytes, where: str) -> nn.Module:
    from safetensors.torch import load

    from medattn.models import create_model

    arch = meta["architecture"]
    kwargs = dict(arch.get("kwargs", {}))
    kwargs.pop("pretrained", None)
    try:
        model = create_model(arch["name"], **kwargs)
        sd = load(weights)
        model.load_state_dict(sd, strict=True)
    except MedattnError:
        raise
    except Exception as exc:  # shape mismatch, bad safetensors
        raise BundleError(f"bundle '{where}' weights do not fit architecture {arch['name']}: {str(exc)[:300]}") from None
    model.eval()
    return model


def load_bundle(path: str | Path, device: str | torch.device | None = None, *,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> Predictor:
    """Load a bundle into a ready :class:`Predictor` (no unpickling, checksum verified).

    Args:
        path: bundle folder or ``.zip``.
        device: torch device (default: CUDA when present, else CPU).
        max_pixels: largest image (width × height) the predictor decodes.

    Raises:
        BundleError: missing, malformed or tampered bundle, or weights that do not fit.
    """
    if Path(path).is_dir() and (Path(path) / "pipeline.json").is_file():  # a chained pair (segment → classify)
        from medattn.pipelines.chained_bundle import load_chained_bundle

        return load_chained_bundle(path, device=device, max_pixels=max_pixels)
    meta, weights = read_bundle_files(path)
    model = _build_model(meta, weights, str(path))
    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return Predictor(model=model.to(dev), meta=meta, device=dev, source=str(path), max_pixels=max_pixels)




# ---------------------------------------------------------------------------------------------
# Untrusted image input: format sniffed from content, pixel count checked from the header.
# ---------------------------------------------------------------------------------------------


def main_output(out: Any) -> torch.Tensor:
    """The logits of a model whose forward returns a tensor, a dict (AG-CNN) or a tuple."""
    from medattn.models.outputs import main_logits

    return main_logits(out)


@dataclass
class Predictor:
    """A model with its preprocessing; ``predict`` takes images in any common form.

    Inputs may be PIL images, numpy arrays, raw bytes, or paths of PNG/JPEG/BMP/TIFF/DICOM files.
    Decoding refuses files over ``max_pixels`` before reading their pixels.
    """

    model: nn.Module
    meta: dict[str, Any]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    source: str = ""
    max_pixels: int = DEFAULT_MAX_PIXELS

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    @property
    def task(self) -> str:
        return str(self.meta.get("task", "binary"))

    @property
    def threshold(self) -> float:
        return float(self.meta.get("threshold", 0.5))

    @property
    def input_hw(self) -> tuple[int, int]:
        """``(height, width)`` the model takes (``input_size`` may be an int or a pair)."""
        s = self.meta["input_size"]
        return (int(s), int(s)) if isinstance(s, (int, float)) else (int(s[0]), int(s[1]))

    def to_pil(self, item: Any) -> Any:
        """Convert a path, bytes, PIL image, pydicom dataset or numpy array to an RGB/L PIL image."""
        from PIL import Image

        if isinstance(item, (str, Path, bytes, bytearray, memoryview)):
            item = read_image(item, max_pixels=self.max_pixels)
        elif hasattr(item, "PixelData") and hasattr(item, "save_as"):  # a pydicom Dataset
            buf = io.BytesIO()
            item.save_as(buf, enforce_file_format=True)
            item = Image.fromarray(read_dicom(buf.getvalue(), max_pixels=self.max_pixels))
        if isinstance(item, np.ndarray):
            arr = item
            if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[2] not in (1, 3, 4):
                arr = np.moveaxis(arr, 0, 2)
            if arr.ndim == 3 and arr.shape[2] == 1:
                arr = arr[..., 0]
            if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
                raise DataError(f"array of shape {item.shape} is not an image; expected H×W, H×W×3 or 3×H×W")
            item = Image.fromarray(to_uint8(arr))
        if not hasattr(item, "convert"):
            raise DataError(f"cannot use {type(item).__name__} as an image; pass a path, PIL image or array")
        if item.size[0] * item.size[1] > self.max_pixels:
            raise ImageTooLargeError(f"image of {item.size[0]}×{item.size[1]} pixels exceeds {self.max_pixels:,}")
        return item.convert("L" if int(self.meta["in_chans"]) == 1 else "RGB")

    def preprocess(self, items: Sequence[Any]) -> torch.Tensor:
        """Stain-normalise (when the bundle has ``stain_normalization``), resize and normalise
        exactly as in training → ``B×C×H×W`` float tensor."""
        from torchvision.transforms.v2 import functional as TF

        from medattn.data.stain import normalizer_from_meta

        hw = list(self.input_hw)
        stain = normalizer_from_meta(self.meta)
        out = []
        for it in items:
            img = TF.pil_to_tensor(self.to_pil(it))
            if stain is not None:
                img = stain(img)
            if tuple(img.shape[-2:]) != tuple(hw):
                img = TF.resize(img, hw, antialias=True)
            img = TF.to_dtype(img, torch.float32, scale=True)
            out.append(TF.normalize(img, list(self.meta["mean"]), list(self.meta["std"])))
        return torch.stack(out)

    @torch.no_grad()
    def predict_tensor(self, x: torch.Tensor) -> np.ndarray:
        """Probabilities for preprocessed input: ``B`` (binary), ``B×K``, or ``B×K×H×W`` (segmentation)."""
        from medattn.infer.tta import dihedral_mean

        def probs_of(v: torch.Tensor) -> torch.Tensor:
            logits = main_output(self.model(v)).float()
            softmax = self.task == "multiclass" or (self.task == "segmentation" and logits.shape[1] > 1)
            return torch.softmax(logits, 1) if softmax else torch.sigmoid(logits)

        # test-time augmentation recorded at training (bundle.json "tta"): 8 views; segmentation: the
        # 4 flips, as medattn.infer.tiling averages them
        views: int | str = ("flips" if self.task == "segmentation" else 8) if self.meta.get("tta") else 1
        probs = dihedral_mean(probs_of, x.to(self.device), dense=self.task == "segmentation", views=views)
        probs = probs.cpu().numpy()
        return probs[:, 0] if self.task == "binary" else probs

    def format_probs(self, p: np.ndarray) -> dict[str, Any]:
        """One image's result from its row of :meth:`predict_tensor`."""
        names = self.class_names
        if self.task == "binary":
            pp = float(p)
            return {"probabilities": {names[0]: 1 - pp, names[1]: pp},
                    "label": names[int(pp >= self.threshold)], "threshold": self.threshold}
        if self.task == "multiclass":
            out = {"probabilities": dict(zip(names, map(float, p), strict=True)), "label": names[int(np.argmax(p))]}
            view = self.meta.get("positive_view")
            if view:  # e.g. abnormal vs normal cells: summed probability at the validation threshold
                pv = float(sum(float(v) for n, v in zip(names, p, strict=True) if n in view["classes"]))
                out[view["name"]] = {"probability": pv, "positive": pv >= float(view["threshold"]),
                                     "threshold": float(view["threshold"])}
            return out
        if self.task == "segmentation":
            lab = self.mask_from_probs(p)
            frac = {n: float((lab == i).mean()) for i, n in enumerate(names)}
            return {"class_fractions": frac, "mask_shape": list(lab.shape), "threshold": self.threshold}
        th = self.meta.get("thresholds") or [0.5] * len(names)
        return {"probabilities": dict(zip(names, map(float, p), strict=True)),
                "labels": [n for n, v, t in zip(names, p, th, strict=True) if v >= t],
                "thresholds": dict(zip(names, map(float, th), strict=True))}

    def mask_from_probs(self, p: np.ndarray) -> np.ndarray:
        """Label mask (``H×W`` uint8) of one segmentation output ``K×H×W``."""
        if p.shape[0] == 1:
            return (p[0] >= self.threshold).astype(np.uint8)
        return np.argmax(p, 0).astype(np.uint8)

    def predict(self, items: Sequence[Any] | Any, *, alpha: float | None = None, method: str | None = None,
                mc_samples: int = 0, trust: bool = True) -> list[dict[str, Any]]:
        """Per image: ``probabilities`` by class name, ``label`` (or ``labels``), ``threshold``, and
        (``trust``) the checks of :func:`medattn.trust.assess.assess`: ``warnings``, ``ood_score``,
        ``prediction_set`` at ``alpha`` (default 0.1; ``method`` aps/raps for multiclass),
        ``uncertainty`` (entropy, TTA disagreement, MC dropout with ``mc_samples`` passes)."""
        if not isinstance(items, (list, tuple)):
            items = [items]
        images = [self.to_pil(it) for it in items]
        x = self.preprocess(images)
        probs = self.predict_tensor(x)
        out = [self.format_probs(p) for p in probs]
        if trust:
            from medattn.trust.assess import assess

            for row, extra in zip(out, assess(self, images, x, probs, alpha=alpha, method=method,
                                              mc_samples=mc_samples), strict=True):
                row.update(extra)
        return out

    @property
    def card(self) -> dict[str, Any]:
        """The bundle's model card (built from its metadata for bundles saved before cards existed)."""
        from medattn.trust.card import build_card

        return dict(self.meta.get("card") or build_card(self.meta))
