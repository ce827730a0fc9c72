"""Find the CAM target layer: the last spatial feature map after the last attention block."""

from __future__ import annotations

import torch
from torch import nn

from medattn.errors import ModelError

__all__ = ["find_target_layer", "get_layer"]


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """Module ``name`` of ``model`` (dotted path) or a :class:`ModelError` listing candidates."""
    mods = dict(model.named_modules())
    if name not in mods:
        cands = [n for n, m in mods.items() if n and not isinstance(m, nn.ModuleList)]
        shown = ", ".join(cands[-15:])
        more = f" (last 15 of {len(cands)}; all: model.named_modules())" if len(cands) > 15 else ""
        raise ModelError(f"unknown layer '{name}' in {type(model).__name__}; valid names include: {shown}{more}")
    return mods[name]


@torch.no_grad()
def find_target_layer(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 96, 96)) -> tuple[str, nn.Module]:
    """Return ``(name, module)`` of the last module (in execution order) with a spatial output.

    A probe forward records when each module *finishes*; a container finishes after its children,
    so for a stage ending in an attention block the stage itself is chosen: its output is the
    attention-refined map (never a conv that skips the attention). Modules whose output is 1×1
    (global pooling) are ignored, and so is a module whose output is the model's own output (a
    segmentation head). A model may declare ``cam_target_layer`` (a module name) to
    override this.
    """
    override = getattr(model, "cam_target_layer", None)
    if override:
        return override, get_layer(model, override)
    names = {m: n for n, m in model.named_modules()}
    order: list[tuple[str, nn.Module]] = []
    hooks = []

    outs: list[torch.Tensor] = []

    def hook(mod: nn.Module, _inp: object, out: object) -> None:
        if isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[-1] > 1 and out.shape[-2] > 1:
            order.append((names[mod], mod))
            outs.append(out)

    for m in model.modules():
        if m is not model:
            hooks.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        p = next(model.parameters())
        final = model(torch.zeros(input_shape, device=p.device, dtype=p.dtype))
    except RuntimeError as exc:
        raise ModelError(
            f"{type(model).__name__} cannot take input of shape {tuple(input_shape)}: {str(exc)[:200]}"
        ) from None
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    # a segmentation head's output *is* the model output: explain the features that feed it
    keep = [o for o, t in zip(order, outs, strict=True) if t is not final]
    if not keep:
        raise ModelError(f"{type(model).__name__} has no spatial feature map to explain")
    return keep[-1]
