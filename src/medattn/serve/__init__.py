"""Serving: REST API, micro-batching, upload limits and the web dashboard (``medattn serve``)."""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def create_app(*args: Any, **kwargs: Any) -> Any:
    """Build the FastAPI app for a bundle (see :func:`medattn.serve.api.create_app`)."""
    from medattn.serve.api import create_app as _create

    return _create(*args, **kwargs)
