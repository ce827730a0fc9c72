"""Quiet Lightning for command-line runs: no tips, device summaries or known-harmless warnings."""

from __future__ import annotations

import logging
import warnings

__all__ = ["quiet_lightning"]

_HARMLESS = (
    ".*does not have many workers.*",  # num_workers 0 is a deliberate choice on small CPU machines
    ".*LeafSpec.*",
    ".*module\\(s\\) in eval mode.*",  # AG-CNN trains a stage with the other branches frozen
)


def quiet_lightning() -> None:
    """Raise Lightning's loggers to ERROR and ignore its known-harmless warnings.

    Called once by every training entry point (``medattn train``, the demo, the studies); it
    changes only logging and warning filters, never training behaviour. Lightning sets its loggers
    to INFO when it is first imported, so it is imported here before the levels are raised.
    """
    import lightning.pytorch  # noqa: F401  (import-time logger setup must come first)

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for message in _HARMLESS:
        warnings.filterwarnings("ignore", message=message)
