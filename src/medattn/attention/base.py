"""Shared behaviour of attention modules: an optional record of the last attention map."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["AttentionModule"]


class AttentionModule(nn.Module):
    """Base class: subclasses call :meth:`_record` with their map.

    Recording is off by default so it costs nothing; turn it on with
    ``module.record_attention = True`` (or :func:`medattn.attention.recording`), then read
    ``module.last_attention`` (a detached tensor: ``B×1×H×W`` for spatial maps,
    ``B×C`` for channel weights).
    """

    record_attention: bool = False
    attention_kind: str = "channel"  # "channel" or "spatial"
    num_inputs: int = 1  # 2 for gates that take (x, g)

    def __init__(self) -> None:
        super().__init__()
        self.last_attention: torch.Tensor | None = None

    def _record(self, att: torch.Tensor) -> None:
        if self.record_attention:
            self.last_attention = att.detach()
