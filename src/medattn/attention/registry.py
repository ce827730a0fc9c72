"""String factory for attention modules: ``create_attention("cbam", 64)``."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from medattn.errors import ModelError

__all__ = ["register_attention", "create_attention", "list_attention", "get_attention_class"]

_ATTENTION: dict[str, type[nn.Module]] = {}


def register_attention(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator that registers an attention module under ``name``."""

    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _ATTENTION and _ATTENTION[name] is not cls:
            raise ValueError(f"attention '{name}' is already registered")
        _ATTENTION[name] = cls
        cls.attention_name = name  # type: ignore[attr-defined]
        return cls

    return deco


def list_attention() -> list[str]:
    """Names of every registered attention mechanism, sorted."""
    return sorted(_ATTENTION)


def get_attention_class(name: str | type[nn.Module]) -> type[nn.Module]:
    """Resolve a registry name (or pass a class through)."""
    if isinstance(name, type):
        return name
    key = str(name).lower()
    if key not in _ATTENTION:
        raise ModelError(
            f"unknown attention '{name}'; valid names: {', '.join(list_attention())}"
        )
    return _ATTENTION[key]


def create_attention(name: str | type[nn.Module] | None, channels: int, **kw: object) -> nn.Module:
    """Build attention ``name`` for a feature map with ``channels`` channels.

    Args:
        name: registry name (see :func:`list_attention`), a module class, or ``None``/``"none"``
            for an identity.
        channels: number of input channels.
        **kw: mechanism-specific options (e.g. ``reduction``, ``kernel_size``).
    """
    if name is None or (isinstance(name, str) and name.lower() in ("none", "")):
        return nn.Identity()
    if channels < 1:
        raise ModelError(f"attention '{name}' needs channels >= 1, got {channels}")
    return get_attention_class(name)(channels, **kw)
