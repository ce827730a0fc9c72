"""A self-contained ``report.html``: every figure embedded as base64, no external assets."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from medattn.io import atomic_write_text

__all__ = ["Report", "img_tag", "table_html"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{font-size:1.6rem}h2{font-size:1.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.gallery img{margin:2px;border:1px solid #ccc}
.note{color:#555;font-size:.9rem}pre{background:#f6f6f6;padding:.6rem;overflow:auto;font-size:.8rem}
"""


def img_tag(path_or_bytes: str | Path | bytes, alt: str = "", width: int | None = None) -> str:
    """An ``<img>`` with the PNG embedded as a data URI."""
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    w = f' width="{width}"' if width else ""
    return f'<img alt="{html.escape(alt)}"{w} src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def table_html(header: list[str], rows: list[list[object]]) -> str:
    """A simple HTML table with escaped cells."""
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


@dataclass
class Report:
    """Sections of raw HTML, rendered into one page with ``id``-anchored headings."""

    title: str
    sections: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, section_id: str, heading: str, body_html: str) -> None:
        self.sections.append((section_id, heading, body_html))

    def render(self) -> str:
        toc = "".join(f'<li><a href="#{sid}">{html.escape(h)}</a></li>' for sid, h, _ in self.sections)
        body = "".join(f'<section id="{sid}"><h2>{html.escape(h)}</h2>{b}</section>' for sid, h, b in self.sections)
        return (
            f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(self.title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{html.escape(self.title)}</h1><ul>{toc}</ul>{body}</body></html>"
        )

    def write(self, path: str | Path) -> Path:
        return atomic_write_text(path, self.render())
