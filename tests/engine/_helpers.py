"""Helpers of the engine tests: run the CLI in a subprocess like a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def cli_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "medattn.cli", *args]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.setdefault("OMP_NUM_THREADS", "1")
    e["PYTHONWARNINGS"] = "ignore"
    return e


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cli_cmd(*args), capture_output=True, text=True, timeout=timeout, env=env(), cwd=REPO)


def metrics(run: Path) -> dict[str, float]:
    doc = json.loads((run / "metrics.json").read_text())
    return {k: v["value"] for k, v in doc["metrics"].items()}
