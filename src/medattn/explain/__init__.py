"""Explanations: CAMs (pytorch-grad-cam), native attention maps, AG-CNN views, faithfulness.

Main entry points (the others are imported on first use):

- :func:`explain` — maps for images through a bundle (``medattn explain`` on the command line);
- :func:`compute_cams`, :func:`cam_context` — CAMs on any model with automatic target layer;
- :func:`attention_maps` — the model's own spatial maps and channel weights;
- :func:`agcnn_view` — AG-CNN's heatmap, mask, crop box, local crop and branch probabilities;
- :mod:`medattn.explain.faithfulness` — pointing game, energy in mask/boxes, deletion/insertion,
  ROAD, model-randomisation check.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "CAM_METHODS",
    "METHODS",
    "Explanation",
    "explain",
    "compute_cams",
    "cam_context",
    "find_target_layer",
    "attention_maps",
    "agcnn_view",
    "resolve_targets",
    "write_explanations",
]

_WHERE = {
    "CAM_METHODS": "medattn.explain.cam",
    "compute_cams": "medattn.explain.cam",
    "cam_context": "medattn.explain.cam",
    "METHODS": "medattn.explain.explain",
    "Explanation": "medattn.explain.explain",
    "find_target_layer": "medattn.explain.layers",
    "attention_maps": "medattn.explain.attention_maps",
    "agcnn_view": "medattn.explain.agcnn_view",
    "resolve_targets": "medattn.explain.targets",
    "write_explanations": "medattn.explain.writer",
}


# eager: the submodule ``explain`` must not shadow the function of the same name
from medattn.explain.explain import explain  # noqa: E402


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'medattn.explain' has no attribute '{name}'")
