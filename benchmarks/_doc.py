"""Shared by the benchmark scripts: rewrite one ``## `` section of docs/benchmarks.md in place."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"

__all__ = ["DOC", "replace_section"]


def replace_section(heading: str, section: str, doc: Path = DOC) -> Path:
    """Replace the section that starts with the line ``heading`` (up to the next ``## ``) by
    ``section``, or append it; other sections are kept as they are. Written atomically."""
    from medattn.io import atomic_write_text

    text = doc.read_text(encoding="utf-8") if doc.is_file() else "# Benchmarks\n"
    body = section.strip("\n") + "\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _m: body + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + body
    return atomic_write_text(doc, text.rstrip("\n") + "\n")
