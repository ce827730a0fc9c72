"""Native attention maps read from the model's own attention modules.

Spatial modules (CBAM's spatial half, attention gates) record ``B×1×h×w`` maps, returned here
upsampled to the input resolution; channel modules (SE, ECA, GCT, SRM, CBAM's channel half)
record ``B×C`` weights, returned as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medattn.attention import recording
from medattn.errors import ModelError

__all__ = ["NativeAttention", "attention_maps", "spatial_maps", "channel_weights"]


@dataclass
class NativeAttention:
    """One attention module's output for a batch.

    Attributes:
        name: module name in the model (``stages.3.1.spatial``).
        kind: ``"spatial"`` (``values`` is ``B×H×W`` at input resolution, in [0, 1] as the module
            produced it) or ``"channel"`` (``values`` is ``B×C``).
        values: the map or weights (float32 numpy).
        native_shape: the shape the module recorded (before upsampling).
    """

    name: str
    kind: str
    values: np.ndarray
    native_shape: tuple[int, ...]


def _as_spatial(att: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    a = att.float()
    if a.ndim == 3:
        a = a[:, None]
    if a.shape[1] != 1:  # a multi-channel gate: average over channels
        a = a.mean(1, keepdim=True)
    up = F.interpolate(a, size=size, mode="bilinear", align_corners=False)
    return up[:, 0].cpu().numpy().astype(np.float32)


@torch.no_grad()
def attention_maps(model: nn.Module, x: torch.Tensor, upsample: bool = True) -> list[NativeAttention]:
    """Run ``model`` on ``x`` with attention recording on and collect every module's map.

    Args:
        model: a network containing :class:`medattn.attention.AttentionModule` instances.
        x: preprocessed input ``B×C×H×W``.
        upsample: bring spatial maps to the input's ``H×W`` (bilinear).

    Returns:
        One :class:`NativeAttention` per module that recorded something, in model order.

    Raises:
        ModelError: the model has no attention modules (names the model).
    """
    if x.ndim != 4:
        raise ModelError(f"input must be a B×C×H×W tensor, got shape {tuple(x.shape)}")
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    out: list[NativeAttention] = []
    try:
        with recording(model) as mods:
            if not mods:
                raise ModelError(
                    f"{type(model).__name__} has no attention modules to read; use a CAM method instead "
                    "(medattn explain --method gradcam)"
                )
            model(x.to(dev))
            for name, mod in mods:
                att = mod.last_attention
                if att is None:
                    continue
                shape = tuple(att.shape)
                if att.ndim >= 3 and att.shape[-1] > 1 and att.shape[-2] > 1:
                    vals = _as_spatial(att, tuple(x.shape[-2:])) if upsample else att.float().cpu().numpy()
                    kind = "spatial"
                else:
                    vals = att.float().reshape(att.shape[0], -1).cpu().numpy()
                    kind = "channel"
                out.append(NativeAttention(name=name, kind=kind, values=vals.astype(np.float32), native_shape=shape))
    finally:
        model.train(was_training)
    return out


def spatial_maps(maps: list[NativeAttention], combine: str = "last") -> np.ndarray | None:
    """Combine the spatial maps at input resolution into one ``B×H×W`` map.

    Args:
        maps: output of :func:`attention_maps` (with ``upsample=True``).
        combine: ``"last"`` (the deepest spatial module), ``"mean"`` or ``"product"`` (the
            effective gating of the whole stack).

    Returns:
        ``None`` when no module is spatial.
    """
    sp = [m.values for m in maps if m.kind == "spatial"]
    if not sp:
        return None
    if combine == "last":
        return sp[-1]
    if combine == "mean":
        return np.mean(np.stack(sp), axis=0)
    if combine == "product":
        return np.prod(np.stack(sp), axis=0)
    raise ModelError(f"unknown combine '{combine}'; valid: last, mean, product")


def channel_weights(maps: list[NativeAttention]) -> dict[str, np.ndarray]:
    """``{module name: B×C weights}`` of the channel-attention modules."""
    return {m.name: m.values for m in maps if m.kind == "channel"}
