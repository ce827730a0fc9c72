"""Model zoo behind one registry (``create_model(name, **kw)``)."""

from __future__ import annotations

from medattn.models import (  # noqa: F401  (register)
    agcnn,
    densenet,
    efficientnet,
    ensemble,
    patch_cnn,
    resnet,
    unet,
)
from medattn.models.registry import (
    create_model,
    list_models,
    model_spec,
    model_task,
    register_model,
)

__all__ = ["create_model", "list_models", "model_spec", "model_task", "register_model"]
