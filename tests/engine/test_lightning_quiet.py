"""quiet_lightning must hold even when Lightning is imported after it (its import sets INFO)."""

from __future__ import annotations

import subprocess
import sys

_SNIPPET = """
import logging
from medattn.engine.lightning_quiet import quiet_lightning
quiet_lightning()
import lightning as L
print(logging.getLogger("lightning.pytorch").level, logging.getLogger("lightning.fabric").level)
"""


def test_quiet_before_lightning_import_stays_quiet() -> None:
    out = subprocess.run([sys.executable, "-c", _SNIPPET], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["40", "40"]  # logging.ERROR for both, not Lightning's INFO (20)
