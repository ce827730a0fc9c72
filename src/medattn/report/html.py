"""A self-contained ``report.html``: every figure embedded as base64, no external assets.

Every report ends with a provenance block (when and by which medattn/torch/Python it was
written, the command line, and the absolute folder it was written to), so a report that travels
alone still says where it came from.
"""

from __future__ import annotations

import base64
import html
import platform
import shlex
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from medattn.io import atomic_write_text

__all__ = ["Report", "img_tag", "figure_html", "table_html", "provenance_rows"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{font-size:1.6rem}h2{font-size:1.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.gallery img{margin:2px;border:1px solid #ccc}
.note{color:#555;font-size:.9rem}pre{background:#f6f6f6;padding:.6rem;overflow:auto;font-size:.8rem}
img{max-width:100%;height:auto}figure{display:inline-block;margin:.3rem .6rem .3rem 0;vertical-align:top}
figcaption{font-size:.8rem;color:#444;text-align:center;max-width:100%}
.generated{color:#555;font-size:.85rem;margin-top:-.6rem}
#provenance{margin-top:2.5rem;border-top:1px solid #ddd;font-size:.85rem}
section{overflow-x:auto}
"""


def img_tag(path_or_bytes: str | Path | bytes, alt: str = "", width: int | None = None) -> str:
    """An ``<img>`` with the PNG embedded as a data URI."""
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    w = f' width="{width}"' if width else ""
    return f'<img alt="{html.escape(alt)}"{w} src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def figure_html(path_or_bytes: str | Path | bytes, caption: str, width: int | None = None) -> str:
    """An embedded PNG with a visible caption (``<figure>``/``<figcaption>``), e.g. the model name
    under a confusion matrix or the probability under a CAM thumbnail."""
    return f"<figure>{img_tag(path_or_bytes, caption, width)}<figcaption>{html.escape(caption)}</figcaption></figure>"


def table_html(header: list[str], rows: list[list[object]]) -> str:
    """A simple HTML table with escaped cells."""
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def provenance_rows(out_dir: str | Path | None = None, extra: dict[str, object] | None = None,
                    now: datetime | None = None) -> list[list[object]]:
    """``[item, value]`` rows: generation time (UTC), versions, platform, command, output folder."""
    when = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%S UTC")
    rows: list[list[object]] = [
        ["generated", when], ["medattn", _version("medattn")], ["torch", _version("torch")],
        ["lightning", _version("lightning")], ["python", platform.python_version()],
        ["platform", f"{platform.system()} {platform.machine()}"],
        ["command", shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "n/a"],
    ]
    if out_dir is not None:
        rows.append(["written to", str(Path(out_dir).resolve())])
    rows += [[k, v] for k, v in (extra or {}).items()]
    return rows


@dataclass
class Report:
    """Sections of raw HTML, rendered into one page with ``id``-anchored headings.

    Attributes:
        title: page title and ``<h1>``.
        sections: ``(id, heading, html)`` in order.
        provenance: extra provenance rows (e.g. ``{"run": path, "recipe": name}``) shown with the
            generation time, versions, command and output folder.
    """

    title: str
    sections: list[tuple[str, str, str]] = field(default_factory=list)
    provenance: dict[str, object] = field(default_factory=dict)

    def add(self, section_id: str, heading: str, body_html: str) -> None:
        self.sections.append((section_id, heading, body_html))

    def render(self, out_dir: str | Path | None = None, now: datetime | None = None) -> str:
        """The page; ``out_dir`` is reported as the folder the report was written to."""
        rows = provenance_rows(out_dir, self.provenance, now)
        when, ver = rows[0][1], rows[1][1]
        toc = "".join(f'<li><a href="#{sid}">{html.escape(h)}</a></li>' for sid, h, _ in self.sections)
        body = "".join(f'<section id="{sid}"><h2>{html.escape(h)}</h2>{b}</section>' for sid, h, b in self.sections)
        prov = f'<footer id="provenance"><h2>Provenance</h2>{table_html(["item", "value"], rows)}</footer>'
        return (
            f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(self.title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{html.escape(self.title)}</h1>"
            f'<p class="generated">generated {html.escape(str(when))} by medattn {html.escape(str(ver))} '
            f'(<a href="#provenance">provenance</a>)</p><ul>{toc}</ul>{body}{prov}</body></html>'
        )

    def write(self, path: str | Path) -> Path:
        return atomic_write_text(path, self.render(Path(path).parent))
