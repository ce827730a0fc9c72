"""Loading pretrained weights safely (safetensors or ``torch.load(weights_only=True)``)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medattn.errors import ModelError

__all__ = ["read_state_dict", "load_pretrained"]


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
    sd = read_state_dict(path)
    sd = {k.removeprefix("model.").removeprefix("module."): v for k, v in sd.items()}
    own = model.state_dict()
    usable = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    mismatched = sorted(k for k in sd if k in own and own[k].shape != sd[k].shape)
    if not usable:
        raise ModelError(
            f"'{path}' shares no tensors with {type(model).__name__}; it is a checkpoint for another architecture"
        )
    result = model.load_state_dict(usable, strict=False)
    report = {
        "missing": sorted(result.missing_keys),
        "unexpected": sorted(k for k in sd if k not in own),
        "mismatched": mismatched,
    }
    if strict_backbone and (report["unexpected"] or report["mismatched"]):
        raise ModelError(f"'{path}' does not match the model: {report}")
    return report
