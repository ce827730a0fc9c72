"""Loading pretrained weights safely (safetensors or ``torch.load(weights_only=True)``)."""

from __future__ import annotations

import logging
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medattn.errors import ModelError

__all__ = [
    "read_state_dict",
    "load_pretrained",
    "load_state_dict_into",
    "imagenet_state_dict",
    "apply_pretrained",
    "IMAGENET_WEIGHTS",
]

log = logging.getLogger(__name__)

#: medattn architecture → torchvision weight enum (class name, member) for ``pretrained="imagenet"``.
IMAGENET_WEIGHTS: dict[str, tuple[str, str]] = {
    "resnet18": ("ResNet18_Weights", "DEFAULT"),
    "resnet34": ("ResNet34_Weights", "DEFAULT"),
    "resnet50": ("ResNet50_Weights", "DEFAULT"),
    "efficientnet_v2_s": ("EfficientNet_V2_S_Weights", "DEFAULT"),
    "densenet121": ("DenseNet121_Weights", "DEFAULT"),
}

# torchvision's DenseNet checkpoints use the old "norm.1" style names
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors``, a medattn bundle folder, or a ``.pt/.pth/.ckpt``.

    Pickled files are read with ``weights_only=True``: a file that needs arbitrary code to load
    is refused, and no code in it runs.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "model.safetensors"
    if not p.is_file():
        raise ModelError(f"weights file '{path}' not found; pass a .safetensors, .pt or bundle path")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(p))
        except Exception as exc:  # safetensors raises its own error types
            raise ModelError(f"'{p}' is not a valid safetensors file: {exc}") from None
    try:
        obj: Any = torch.load(str(p), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"refused to load '{p}': it is not a plain tensor checkpoint ({first[:160]}); "
            "only weights-only checkpoints or .safetensors files are accepted"
        ) from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"'{p}' does not hold a state dict of tensors")
    return obj


def load_pretrained(model: nn.Module, path: str | Path, *, strict_backbone: bool = False) -> dict[str, list[str]]:
    """Load matching tensors of ``path`` into ``model``; report missing/unexpected keys.

    Tensors whose shape differs (e.g. a classifier for another number of classes) are skipped and
    reported, so a new head keeps its fresh initialisation instead of being silently mismatched.
    """
    report = load_state_dict_into(model, read_state_dict(path), source=str(path))
    if strict_backbone and (report["unexpected"] or report["mismatched"]):
        raise ModelError(f"'{path}' does not match the model: {report}")
    return report


def _normalise_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        k = k.removeprefix("model.").removeprefix("module.")
        m = _DENSENET_OLD_KEY.match(k)
        out[m.group(1) + m.group(2) if m else k] = v
    return out


def _adapt_input_conv(src: torch.Tensor, dst_shape: torch.Size) -> torch.Tensor | None:
    """RGB first-conv weights for another input channel count (sum for 1, tiled otherwise)."""
    if src.ndim != 4 or len(dst_shape) != 4 or src.shape[0] != dst_shape[0] or src.shape[2:] != dst_shape[2:]:
        return None
    cin, new = src.shape[1], dst_shape[1]
    if cin != 3:
        return None
    if new == 1:
        return src.sum(1, keepdim=True)
    reps = -(-new // cin)
    return src.repeat(1, reps, 1, 1)[:, :new] * (cin / new)


def load_state_dict_into(
    model: nn.Module, state: dict[str, torch.Tensor], *, source: str, min_fraction: float = 0.5
) -> dict[str, list[str]]:
    """Copy the tensors of ``state`` whose name and shape match into ``model``.

    A first convolution trained on RGB is adapted to the model's input channels. Tensors of
    another shape (a classifier for other classes) are skipped and reported, so the new head
    keeps its fresh initialisation.

    Args:
        model: destination module.
        state: a state dict (torchvision names, a medattn bundle, a Lightning checkpoint...).
        source: the file or weight name, for messages.
        min_fraction: below this fraction of checkpoint tensors used, the checkpoint is taken for
            another architecture and refused.

    Returns:
        ``{"missing", "unexpected", "mismatched", "adapted"}`` key lists (also stored on
        ``model.pretrained_report``).

    Raises:
        ModelError: the checkpoint is for another architecture.
    """
    sd = _normalise_keys(state)
    own = model.state_dict()
    usable: dict[str, torch.Tensor] = {}
    mismatched: list[str] = []
    adapted: list[str] = []
    for k, v in sd.items():
        if k not in own:
            continue
        if own[k].shape == v.shape:
            usable[k] = v
            continue
        conv = _adapt_input_conv(v, own[k].shape)
        if conv is not None:
            usable[k] = conv
            adapted.append(k)
        else:
            mismatched.append(k)
    if not sd or len(usable) < min_fraction * len(sd):
        raise ModelError(
            f"'{source}' matches only {len(usable)} of its {len(sd)} tensors in "
            f"{type(model).__name__}; it is a checkpoint for another architecture "
            "(pass weights saved from the same model name)"
        )
    result = model.load_state_dict(usable, strict=False)
    report = {
        "missing": sorted(result.missing_keys),
        "unexpected": sorted(k for k in sd if k not in own),
        "mismatched": sorted(mismatched),
        "adapted": sorted(adapted),
    }
    log.info(
        "loaded %d tensors from %s (missing %d, unexpected %d, shape-mismatched %d)",
        len(usable), source, len(report["missing"]), len(report["unexpected"]), len(mismatched),
    )
    model.pretrained_report = report  # type: ignore[assignment]
    return report


def imagenet_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights for ``arch`` (downloaded once into the torch hub cache).

    Raises:
        ModelError: ``arch`` has no ImageNet weights, or they cannot be downloaded (the message
            says where to put the file when offline).
    """
    import torchvision.models as tvm

    if arch not in IMAGENET_WEIGHTS:
        raise ModelError(
            f"no ImageNet weights for '{arch}'; pretrained='imagenet' works for "
            f"{', '.join(sorted(IMAGENET_WEIGHTS))}; pass a weights file path instead"
        )
    enum_name, member = IMAGENET_WEIGHTS[arch]
    weights = getattr(getattr(tvm, enum_name), member)
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # URLError, OSError, hash mismatch, truncated file...
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        fname = weights.url.rsplit("/", 1)[-1]
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"cannot get ImageNet weights for {arch} ({reason}); offline, download {weights.url} "
            f"and put it at {hub / fname}"
        ) from None


def apply_pretrained(model: nn.Module, pretrained: str | Path | None, *, arch: str | None = None) -> None:
    """Load ``pretrained`` (``None``, ``"imagenet"`` or a weights path) into ``model``.

    Args:
        model: the freshly built model.
        pretrained: ``None`` (keep the random init), ``"imagenet"`` (torchvision weights of
            ``arch``) or a ``.safetensors``/``.pt``/bundle path (read with ``weights_only=True``).
        arch: torchvision architecture name used for ``"imagenet"``.
    """
    if pretrained is None or pretrained == "" or pretrained is False:
        return
    if isinstance(pretrained, str) and pretrained.lower() == "imagenet":
        if arch is None:
            raise ModelError(
                f"{type(model).__name__} has no ImageNet weights; use pretrained=None or a weights file path"
            )
        load_state_dict_into(model, imagenet_state_dict(arch), source=f"torchvision {arch} ImageNet weights")
        return
    load_state_dict_into(model, read_state_dict(pretrained), source=str(pretrained))
