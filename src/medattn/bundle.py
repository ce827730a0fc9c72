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
from medattn.errors import BundleError, DataError, MedattnError
from medattn.io import atomic_dir, atomic_path, to_jsonable

__all__ = ["save_bundle", "load_bundle", "read_bundle_files", "Predictor", "BUNDLE_FORMAT"]

BUNDLE_FORMAT = 1
_REQUIRED = ("architecture", "class_names", "input_size", "in_chans", "mean", "std", "weights_sha256")


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
                meta_text = zf.read("bundle.json").decode("utf-8")
                weights = zf.read("model.safetensors") if "model.safetensors" in names else None
        elif p.exists():
            raise BundleError(f"'{p}' is not a bundle folder or .zip; pass the folder written by medattn")
        else:
            raise BundleError(f"bundle '{p}' not found")
    except OSError as exc:
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


def load_bundle(path: str | Path, device: str | torch.device | None = None) -> Predictor:
    """Load a bundle into a ready :class:`Predictor` (no unpickling, checksum verified)."""
    meta, weights = read_bundle_files(path)
    model = _build_model(meta, weights, str(path))
    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return Predictor(model=model.to(dev), meta=meta, device=dev, source=str(path))


@dataclass
class Predictor:
    """A model with its preprocessing; ``predict`` takes images in any common form."""

    model: nn.Module
    meta: dict[str, Any]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    source: str = ""

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    @property
    def task(self) -> str:
        return str(self.meta.get("task", "binary"))

    @property
    def threshold(self) -> float:
        return float(self.meta.get("threshold", 0.5))

    def to_pil(self, item: Any) -> Any:
        """Convert a path, PIL image or numpy array to an RGB/L PIL image."""
        from PIL import Image, UnidentifiedImageError

        if isinstance(item, (str, Path)):
            try:
                with Image.open(item) as im:
                    im.load()
                    item = im.copy()
            except (OSError, UnidentifiedImageError) as exc:
                raise DataError(f"cannot read image '{item}': {exc}") from None
        if isinstance(item, np.ndarray):
            arr = item
            if arr.dtype != np.uint8:
                a = arr.astype(np.float64)
                lo, hi = float(a.min()), float(a.max())
                arr = ((a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)).astype(np.uint8)
            if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[2] not in (1, 3, 4):
                arr = np.moveaxis(arr, 0, 2)
            if arr.ndim == 3 and arr.shape[2] == 1:
                arr = arr[..., 0]
            item = Image.fromarray(arr)
        if not hasattr(item, "convert"):
            raise DataError(f"cannot use {type(item).__name__} as an image; pass a path, PIL image or array")
        return item.convert("L" if int(self.meta["in_chans"]) == 1 else "RGB")

    def preprocess(self, items: Sequence[Any]) -> torch.Tensor:
        """Resize and normalise exactly as in training → ``B×C×H×W`` float tensor."""
        from torchvision.transforms.v2 import functional as TF

        size = int(self.meta["input_size"])
        out = []
        for it in items:
            img = TF.pil_to_tensor(self.to_pil(it))
            if img.shape[-2:] != (size, size):
                img = TF.resize(img, [size, size], antialias=True)
            img = TF.to_dtype(img, torch.float32, scale=True)
            out.append(TF.normalize(img, list(self.meta["mean"]), list(self.meta["std"])))
        return torch.stack(out)

    @torch.no_grad()
    def predict_tensor(self, x: torch.Tensor) -> np.ndarray:
        """Probabilities for preprocessed input: ``B`` (binary) or ``B×K``."""
        logits = self.model(x.to(self.device)).float()
        if self.task == "multiclass":
            return torch.softmax(logits, 1).cpu().numpy()
        probs = torch.sigmoid(logits).cpu().numpy()
        return probs[:, 0] if self.task == "binary" else probs

    def predict(self, items: Sequence[Any] | Any) -> list[dict[str, Any]]:
        """Per image: ``probabilities`` by class name, ``label`` (or ``labels``), ``threshold``."""
        if not isinstance(items, (list, tuple)):
            items = [items]
        probs = self.predict_tensor(self.preprocess(items))
        names = self.class_names
        res = []
        for p in probs:
            if self.task == "binary":
                pp = float(p)
                res.append({"probabilities": {names[0]: 1 - pp, names[1]: pp},
                            "label": names[int(pp >= self.threshold)], "threshold": self.threshold})
            elif self.task == "multiclass":
                res.append({"probabilities": dict(zip(names, map(float, p), strict=True)),
                            "label": names[int(np.argmax(p))]})
            else:
                th = self.meta.get("thresholds") or [0.5] * len(names)
                res.append({"probabilities": dict(zip(names, map(float, p), strict=True)),
                            "labels": [n for n, v, t in zip(names, p, th, strict=True) if v >= t]})
        return res


def bundle_bytes_io(data: bytes) -> io.BytesIO:  # pragma: no cover - helper for serve
    return io.BytesIO(data)
