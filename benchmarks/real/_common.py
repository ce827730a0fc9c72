"""Shared helpers of the real-data studies (``benchmarks/real/*.py``).

Every study reads ``../shared/data`` (or ``$MEDATTN_SHARED_DATA``) in place, never copies it,
and exits 0 with a message when it is absent. Each study writes its own markdown section to
``benchmarks/real/sections/<study>.md`` (plus a JSON with every number); ``run_all.py``
assembles ``docs/results.md`` from those files, so the published numbers are exactly the ones
the scripts wrote.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
# $MEDATTN_REAL_OUT redirects runs and sections (smoke tests); default: the repo's own places.
_OUT = os.environ.get("MEDATTN_REAL_OUT")
SECTIONS = Path(_OUT) / "sections" if _OUT else Path(__file__).resolve().parent / "sections"
RUNS = Path(_OUT) / "runs" if _OUT else REPO / "runs" / "real"


def data_root() -> Path:
    """``$MEDATTN_SHARED_DATA`` or ``<repo>/../shared/data``."""
    env = os.environ.get("MEDATTN_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def require_data(sub: str) -> Path:
    """The dataset folder ``sub``; prints a message and exits 0 when it is absent."""
    p = data_root() / sub
    if not p.is_dir():
        print(f"SKIP: real data folder '{p}' not found (set MEDATTN_SHARED_DATA); nothing to do.")
        raise SystemExit(0)
    return p


def setup_torch(threads: int | None = None) -> None:
    """CPU threads (``$MEDATTN_THREADS``, default 1) and quiet Lightning.

    One thread: on a machine shared with other jobs, two OpenMP threads ran 2.5-4× *slower*
    than one (measured here on 2026-11-22: patch CNN 31 vs 80 img/s).
    """
    import torch

    torch.set_num_threads(threads or int(os.environ.get("MEDATTN_THREADS", "1")))
    from medattn.engine.lightning_quiet import quiet_lightning

    quiet_lightning()


def command_line() -> str:
    """The command that ran this script, as a user would type it from the repo root."""
    script = Path(sys.argv[0]).resolve()
    try:
        rel = script.relative_to(REPO).as_posix()
    except ValueError:
        rel = str(script)
    return " ".join([".venv/bin/python", rel, *map(shlex.quote, sys.argv[1:])])


class Clock:
    """Wall-clock timer of a whole study."""

    def __init__(self) -> None:
        self.t0 = time.time()

    def minutes(self) -> float:
        return (time.time() - self.t0) / 60.0


def fmt(v: float | None, digits: int = 3) -> str:
    if v is None or not np.isfinite(v):
        return "n/a"
    return f"{v:.{digits}f}"


def fmt_ci(m: dict[str, float], digits: int = 3) -> str:
    """``0.853 [0.801, 0.897]`` from a ``{"value", "ci_low", "ci_high"}`` dict."""
    return f"{fmt(m['value'], digits)} [{fmt(m['ci_low'], digits)}, {fmt(m['ci_high'], digits)}]"


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def machine_note() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.machine()}, {os.cpu_count()} CPU cores shared with other jobs "
            f"(1-min load average at the end: {load:.1f})")


def write_section(study: str, markdown: str, numbers: dict[str, Any]) -> Path:
    """Write ``sections/<study>.md`` and ``sections/<study>.json`` atomically and echo the markdown."""
    from medattn.io import atomic_write_json, atomic_write_text

    SECTIONS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(SECTIONS / f"{study}.json", numbers)
    path = atomic_write_text(SECTIONS / f"{study}.md", markdown.rstrip() + "\n")
    print(markdown)
    return path


def dump_json(path: Path, obj: Any) -> None:
    from medattn.io import atomic_write_json

    atomic_write_json(path, obj)


def load_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def engine_recipe(base: str, changes: dict[str, Any]) -> dict[str, Any]:
    """A validated engine recipe (shipped ``base`` with dotted ``changes`` replaced) as a plain dict.

    Stored in a bundle's ``recipe`` field so ``medattn evaluate BUNDLE --data PATH`` can rebuild
    the data pipeline (format, image size, classes) without the run directory.
    """
    import yaml

    from medattn.engine.config import find_recipe, recipe_from_dict

    raw = yaml.safe_load(find_recipe(base).read_text(encoding="utf-8"))
    for key, value in changes.items():
        node = raw
        *parents, leaf = key.split(".")
        for k in parents:
            node = node.setdefault(k, {})
        node[leaf] = value
    raw.pop("search", None)
    raw.pop("smoke", None)
    return recipe_from_dict(raw, source=f"recipe '{base}' + bench changes").model_dump(mode="json")


def attach_recipe(bundle: Path, recipe: dict[str, Any], **fields: Any) -> bool:
    """Re-save ``bundle`` with ``recipe`` (the old custom dict moves to ``bench``) and any other
    metadata ``fields``; returns False when nothing had to change."""
    from medattn.bundle import load_bundle, save_bundle

    pred = load_bundle(bundle, device="cpu")
    meta = dict(pred.meta)
    has = isinstance(meta.get("recipe"), dict) and "task" in meta["recipe"]
    if has and all(meta.get(k) == v for k, v in fields.items()):
        return False
    drop = {"format", "medattn_version", "architecture", "weights_file", "weights_sha256"}
    new = {k: v for k, v in meta.items() if k not in drop}
    if not has:
        new["bench"] = meta.get("recipe")
        new["recipe"] = recipe
    new.update(fields)
    save_bundle(pred.model, new, bundle)
    return True
