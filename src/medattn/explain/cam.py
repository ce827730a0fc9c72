"""Class activation maps on pytorch-grad-cam with automatic target-layer discovery."""

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

from medattn.errors import ConfigError
from medattn.explain.layers import find_target_layer, get_layer

__all__ = ["CAM_METHODS", "BinaryLogitTarget", "ClassTarget", "cam_context", "compute_cams"]

CAM_METHODS = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "xgradcam": XGradCAM,
    "eigencam": EigenCAM,
    "scorecam": ScoreCAM,
    "layercam": LayerCAM,
}


class BinaryLogitTarget:
    """Target of a single-logit binary model: the logit itself (positive class) or its negation."""

    def __init__(self, positive: bool = True) -> None:
        self.sign = 1.0 if positive else -1.0

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return self.sign * output.reshape(-1)[0]


class ClassTarget:
    """Target of a multi-output model: the logit of ``index``."""

    def __init__(self, index: int) -> None:
        self.index = int(index)

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return output.reshape(-1)[self.index]


@contextmanager
def cam_context(
    model: nn.Module, method: str = "gradcam", layer: str | None = None,
    input_shape: tuple[int, ...] = (1, 3, 96, 96),
) -> Iterator[object]:
    """A pytorch-grad-cam object whose hooks are released on exit."""
    key = method.lower()
    if key not in CAM_METHODS:
        raise ConfigError(f"unknown CAM method '{method}'; valid: {', '.join(CAM_METHODS)}")
    target = get_layer(model, layer) if layer else find_target_layer(model, input_shape)[1]
    cam = CAM_METHODS[key](model=model, target_layers=[target])
    try:
        yield cam
    finally:
        cam.activations_and_grads.release()


def compute_cams(
    model: nn.Module, images: torch.Tensor, targets: Sequence[object] | None = None,
    method: str = "gradcam", layer: str | None = None, batch_size: int = 32,
) -> np.ndarray:
    """CAMs for a batch of preprocessed images (``B×C×H×W``) → ``B×H×W`` in [0, 1].

    ``targets`` default to the positive logit of a single-output model, or the top class.
    """
    model.eval()
    out: list[np.ndarray] = []
    with cam_context(model, method, layer, (1, *images.shape[1:])) as cam:
        for s in range(0, len(images), batch_size):
            x = images[s : s + batch_size]
            tg = list(targets[s : s + batch_size]) if targets is not None else None
            if tg is None:
                with torch.no_grad():
                    logits = model(x)
                tg = ([BinaryLogitTarget(True) for _ in range(len(x))] if logits.shape[1] == 1
                      else [ClassTarget(int(i)) for i in logits.argmax(1)])
            out.append(np.asarray(cam(input_tensor=x, targets=tg), dtype=np.float32))
    return np.concatenate(out) if out else np.zeros((0, *images.shape[-2:]), np.float32)
