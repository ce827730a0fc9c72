"""Attention mechanisms behind one registry (``create_attention(name, channels)``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from medattn.attention import cbam, channel, spatial  # noqa: F401  (register)
from medattn.attention.base import AttentionModule
from medattn.attention.cbam import CBAM
from medattn.attention.channel import ChannelAttention
from medattn.attention.registry import (
    create_attention,
    get_attention_class,
    list_attention,
    register_attention,
)
from medattn.attention.spatial import SpatialAttention

__all__ = [
    "AttentionModule",
    "CBAM",
    "ChannelAttention",
    "SpatialAttention",
    "create_attention",
    "get_attention_class",
    "list_attention",
    "register_attention",
    "recording",
]


@contextmanager
def recording(model: nn.Module) -> Iterator[list[tuple[str, AttentionModule]]]:
    """Turn on attention-map recording for every attention module in ``model``.

    Yields the list of ``(name, module)`` pairs; recording is switched off and the stored maps
    released on exit.
    """
    mods = [(n, m) for n, m in model.named_modules() if isinstance(m, AttentionModule)]
    for _, m in mods:
        m.record_attention = True
    try:
        yield mods
    finally:
        for _, m in mods:
            m.record_attention = False
            m.last_attention = None
