"""docs/results.md: every results table names the command that produced it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "results.md"
SECTIONS = ROOT / "benchmarks" / "real" / "sections"


def _sections(text: str) -> list[tuple[str, str]]:
    parts = re.split(r"(?m)^## ", text)
    return [(p.splitlines()[0], p) for p in parts[1:]]


def _has_table(body: str) -> bool:
    return re.search(r"(?m)^\|.*\|\s*$\n^\|(\s*:?-{3,}:?\s*\|)+\s*$", body) is not None


def test_results_doc_exists_with_header() -> None:
    assert DOC.is_file(), "docs/results.md is missing; run `.venv/bin/python benchmarks/real/run_all.py --doc-only`"
    assert DOC.read_text().startswith("# Results on real data")


def test_every_table_names_its_command_and_wall_time() -> None:
    text = DOC.read_text()
    with_tables = [(title, body) for title, body in _sections(text) if _has_table(body)]
    for title, body in with_tables:
        m = re.search(r"Command: `([^`]+)`", body)
        assert m, f"section '{title}' has a table but no 'Command: `...`' line"
        script = re.search(r"benchmarks/real/[\w.]+\.py", m.group(1))
        assert script and (ROOT / script.group(0)).is_file(), f"section '{title}' names a missing script"
        assert re.search(r"Wall time: [\d.]+ min", body), f"section '{title}' does not state its wall time"


def test_doc_matches_the_sections_the_scripts_wrote() -> None:
    text = DOC.read_text()
    for sec in sorted(SECTIONS.glob("*.md")):
        assert sec.read_text().rstrip() in text, f"{sec.name} differs from docs/results.md; rebuild with run_all.py --doc-only"


def test_every_table_row_has_a_ci_or_is_labelled() -> None:
    """Headline tables carry CIs: at least one '[lo, hi]' interval per table of metrics."""
    for title, body in _sections(DOC.read_text()):
        if _has_table(body) and "95% CI" in body:
            assert re.search(r"\d\.\d{3} \[-?\d\.\d{3}, -?\d\.\d{3}\]", body), f"section '{title}' lacks CIs"
