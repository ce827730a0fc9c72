""":func:`load_bundle`: any bundle folder or ``.zip`` → a ready predictor."""

from __future__ import annotations

from pathlib import Path

import torch

from medattn.bundle.chained import is_chained_bundle, load_chained_bundle
from medattn.bundle.predictor import Predictor, load_single_bundle
from medattn.decode import DEFAULT_MAX_PIXELS

__all__ = ["load_bundle"]


def load_bundle(path: str | Path, device: str | torch.device | None = None, *,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> Predictor:
    """Load a bundle into a ready :class:`Predictor` (no unpickling, checksum verified).

    A folder with a ``pipeline.json`` is a chained segment → classify pair and gives a
    :class:`~medattn.bundle.chained.ChainedPredictor`.

    Args:
        path: bundle folder or ``.zip``.
        device: torch device (default: CUDA when present, else CPU).
        max_pixels: largest image (width × height) the predictor decodes.

    Raises:
        BundleError: missing, malformed or tampered bundle, or weights that do not fit.
    """
    if is_chained_bundle(path):
        return load_chained_bundle(path, device=device, max_pixels=max_pixels)
    return load_single_bundle(path, device=device, max_pixels=max_pixels)
