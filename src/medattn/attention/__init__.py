"""Attention mechanisms behind one registry (``create_attention(name, channels)``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from medattn.attention import (  # noqa: F401  (register)
    cbam,
    channel,
    gate,
    gct,
    self_attention,
    spatial,
    srm,
)
from medattn.attention.base import AttentionModule
from medattn.attention.cbam import CBAM
from medattn.attention.channel import ChannelAttention, EfficientChannelAttention, SqueezeExcitation
from medattn.attention.gate import AttentionGate
from medattn.attention.gct import GCT
from medattn.attention.registry import (
    create_attention,
    get_attention_class,
    list_attention,
    register_attention,
)
from medattn.attention.self_attention import SelfAttention2d
from medattn.attention.spatial import SpatialAttention
from medattn.attention.srm import SRM

__all__ = [
    "AttentionGate",
    "AttentionModule",
    "CBAM",
    "ChannelAttention",
    "EfficientChannelAttention",
    "GCT",
    "SRM",
    "SelfAttention2d",
    "SpatialAttention",
    "SqueezeExcitation",
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
