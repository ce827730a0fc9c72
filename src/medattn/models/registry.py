"""Model registry: ``@register_model`` builders, ``create_model(name, **kw)``, ``list_models()``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from medattn.errors import ModelError

__all__ = ["register_model", "create_model", "list_models", "model_task", "model_spec"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_TASKS: dict[str, str] = {}


def register_model(
    fn: Callable[..., nn.Module] | None = None, *, name: str | None = None, task: str = "classification"
) -> Any:
    """Register a keyword-only model builder under its function name (or ``name``).

    Args:
        task: ``"classification"``, ``"segmentation"`` or ``"agcnn"``; tells engines and explainers
            what the model outputs.
    """

    def deco(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or f.__name__
        _MODELS[key] = f
        _TASKS[key] = task
        return f

    return deco(fn) if fn is not None else deco


def list_models(task: str | None = None) -> list[str]:
    """Registered model names (optionally only those of one ``task``), sorted."""
    return sorted(k for k in _MODELS if task is None or _TASKS[k] == task)


def model_task(name: str) -> str:
    """The task a registered model solves."""
    _check_name(name)
    return _TASKS[name]


def _check_name(name: str) -> None:
    if name not in _MODELS:
        raise ModelError(f"unknown model '{name}'; valid names: {', '.join(list_models())}")


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build registered model ``name``.

    The returned module carries ``model.medattn_spec = {"name": ..., "kwargs": ...}`` so a bundle
    can rebuild it without pickling.

    Raises:
        ModelError: unknown name, unknown keyword, or invalid ``num_classes``.
    """
    _check_name(name)
    fn = _MODELS[name]
    params = inspect.signature(fn).parameters
    accepts_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if not accepts_var_kw:
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise ModelError(
                f"model '{name}' does not take {', '.join(unknown)}; "
                f"valid arguments: {', '.join(sorted(params))}"
            )
    nc = kwargs.get("num_classes")
    if nc is not None and (not isinstance(nc, int) or nc < 1):
        raise ModelError(f"num_classes must be an integer >= 1, got {nc!r}")
    model = fn(**kwargs)
    model.medattn_spec = {"name": name, "kwargs": dict(kwargs)}  # type: ignore[assignment]
    return model


def model_spec(model: nn.Module) -> dict[str, Any]:
    """The ``{"name", "kwargs"}`` a model was created with (raises if built outside the registry)."""
    spec = getattr(model, "medattn_spec", None)
    if spec is None:
        raise ModelError("this model was not built by medattn.models.create_model; cannot describe it")
    return spec
