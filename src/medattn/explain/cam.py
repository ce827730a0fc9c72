"""Class activation maps on pytorch-grad-cam with automatic target-layer discovery.

:func:`cam_context` wraps a pytorch-grad-cam object so that every hook is released on exit and
the model is left as it was found (training flag, ``requires_grad`` flags, no ``.grad`` tensors).

While a CAM runs, the model's parameters are frozen and the target layer's output is re-rooted
as a fresh leaf of the autograd graph: the backward pass then only covers the layers *after*
the target layer and computes no weight gradients. The gradient reaching the target layer is
exactly the one a full backward would give (every path from the layer to the output is kept),
so the maps are unchanged, only cheaper.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from pytorch_grad_cam import (
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from torch import nn

from medattn.errors import ConfigError, ModelError
from medattn.explain.layers import find_target_layer, get_layer
from medattn.explain.targets import BinaryLogitTarget, ClassTarget, SegmentationTarget, logits_of

__all__ = [
    "CAM_METHODS",
    "BinaryLogitTarget",
    "ClassTarget",
    "SegmentationTarget",
    "cam_context",
    "check_method",
    "compute_cams",
    "default_targets",
    "tile_cams",
    "LogitsOnly",
]

CAM_METHODS = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "xgradcam": XGradCAM,
    "eigencam": EigenCAM,
    "scorecam": ScoreCAM,
    "layercam": LayerCAM,
}
_GRADIENT_FREE = {"eigencam", "scorecam"}


def check_method(method: str) -> str:
    """Normalised method key, or a :class:`ConfigError` listing the valid methods."""
    key = str(method).lower().replace("_", "").replace("plusplus", "++")
    if key not in CAM_METHODS:
        raise ConfigError(f"unknown CAM method '{method}'; valid: {', '.join(CAM_METHODS)}")
    return key


class LogitsOnly(nn.Module):
    """Wrap a model whose forward returns a dict or tuple so it returns its main logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return logits_of(self.model(x))


def _reroot(_mod: nn.Module, _inp: object, out: object) -> object:
    if isinstance(out, torch.Tensor) and out.is_floating_point() and torch.is_grad_enabled():
        # a leaf that requires grad, cloned so later in-place ops (ReLU(inplace)) stay legal
        return out.detach().requires_grad_(True).clone()
    return None


def _silence_scorecam() -> None:
    """ScoreCAM draws a tqdm bar per image; give *its module only* a no-op ``tqdm``."""
    import types

    import pytorch_grad_cam.score_cam as sc

    sc.tqdm = types.SimpleNamespace(tqdm=lambda it, *a, **k: it)  # type: ignore[attr-defined]


@contextmanager
def cam_context(
    model: nn.Module,
    method: str = "gradcam",
    layer: str | None = None,
    input_shape: tuple[int, ...] = (1, 3, 96, 96),
    scorecam_batch: int = 32,
) -> Iterator[object]:
    """A pytorch-grad-cam object whose hooks are released (and model restored) on exit.

    Args:
        model: the network.
        method: one of :data:`CAM_METHODS`.
        layer: module name of the target layer; ``None`` finds it (:func:`find_target_layer`).
        input_shape: shape of a probe input for layer discovery.
        scorecam_batch: masked images per forward pass of Score-CAM.

    Raises:
        ConfigError: unknown method. ModelError: unknown layer name.
    """
    key = check_method(method)
    target = get_layer(model, layer) if layer else find_target_layer(model, input_shape)[1]
    was_training = model.training
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    handle = None if key in _GRADIENT_FREE else target.register_forward_hook(_reroot)
    cam = None
    try:
        cam = CAM_METHODS[key](model=LogitsOnly(model), target_layers=[target])
        if key == "scorecam":
            cam.batch_size = int(scorecam_batch)
            _silence_scorecam()
        yield cam
    finally:
        if cam is not None:
            cam.activations_and_grads.release()
            cam.outputs = None
        if handle is not None:
            handle.remove()
        for p in frozen:
            p.requires_grad_(True)
        model.train(was_training)


def default_targets(model: nn.Module, x: torch.Tensor) -> list[object]:
    """Top-prediction targets: positive logit of a single-output classifier, the arg-max class
    of a multi-output one, the predicted foreground of a segmentation model."""
    with torch.no_grad():
        logits = logits_of(model(x))
    if logits.ndim == 4:
        from medattn.explain.targets import resolve_targets

        names = [str(i) for i in range(max(2, logits.shape[1]))]
        specs = resolve_targets(logits, "segmentation", "top", names)
        first: dict[int, object] = {}
        for s in specs:
            first.setdefault(s.item, s.target)
        return [first[i] for i in range(len(x))]
    if logits.shape[1] == 1:
        return [BinaryLogitTarget(True) for _ in range(len(x))]
    return [ClassTarget(int(i)) for i in logits.argmax(1)]


def compute_cams(
    model: nn.Module,
    images: torch.Tensor,
    targets: Sequence[object] | None = None,
    method: str = "gradcam",
    layer: str | None = None,
    batch_size: int = 32,
    scorecam_batch: int = 32,
) -> np.ndarray:
    """CAMs for a batch of preprocessed images (``B×C×H×W``) → ``B×H×W`` in [0, 1].

    Args:
        model: the network (put in eval mode while mapping, restored after).
        images: preprocessed input on any device (moved to the model's).
        targets: one callable per image (see :mod:`medattn.explain.targets`); default: the top
            prediction (:func:`default_targets`).
        method: one of :data:`CAM_METHODS`.
        layer: target-layer module name (default: found automatically).
        batch_size: images per CAM pass.
        scorecam_batch: masked images per forward pass of Score-CAM.

    Raises:
        ConfigError: unknown method or a target list of the wrong length.
        ModelError: unknown layer, or images the model cannot take.
    """
    if images.ndim != 4:
        raise ModelError(f"images must be a B×C×H×W tensor, got shape {tuple(images.shape)}")
    if targets is not None and len(targets) != len(images):
        raise ConfigError(f"got {len(targets)} targets for {len(images)} images; pass one target per image")
    dev = next(model.parameters()).device
    out: list[np.ndarray] = []
    with cam_context(model, method, layer, (1, *images.shape[1:]), scorecam_batch) as cam, torch.enable_grad():
        model.eval()
        for s in range(0, len(images), batch_size):
            x = images[s : s + batch_size].to(dev)
            tg = list(targets[s : s + batch_size]) if targets is not None else default_targets(model, x)
            try:
                maps = cam(input_tensor=x, targets=tg)
            except RuntimeError as exc:
                raise ModelError(
                    f"{type(model).__name__} cannot take input of shape {tuple(x.shape)}: {str(exc)[:200]}"
                ) from None
            out.append(np.asarray(maps, dtype=np.float32))
            cam.activations_and_grads.clear()
            cam.outputs = None
    return np.concatenate(out) if out else np.zeros((0, *images.shape[-2:]), np.float32)


def tile_cams(predictor: object, x: torch.Tensor) -> np.ndarray:
    """Grad-CAM of prepared tiles (``B×C×h×w``) for a classifier's positive class (binary) or
    last class (multi-class): what ``medattn slide --cam`` stitches into the slide's map
    (:class:`medattn.infer.slide_cam.CamStitcher`).

    Args:
        predictor: a :class:`~medattn.bundle.Predictor` (its ``model``, ``task``, ``class_names``
            and ``device``).
        x: tiles prepared by the predictor's preparation.
    """
    if predictor.task == "binary":
        targets: list[object] = [BinaryLogitTarget(True) for _ in range(len(x))]
    else:
        targets = [ClassTarget(len(predictor.class_names) - 1) for _ in range(len(x))]
    with torch.enable_grad():
        return compute_cams(predictor.model, x.to(predictor.device), targets)
