"""Trust figures and the report section beside calibration: risk–coverage curve (AURC) and the
conformal coverage / set size table (both from ``metrics.json``, written by evaluation)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from medattn.report.plots import plt, save_figure

__all__ = ["save_risk_coverage", "trust_section", "RISK_COVERAGE_PNG"]

RISK_COVERAGE_PNG = "risk_coverage.png"


def save_risk_coverage(curves: dict[str, dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Risk (error rate of the answered items) against coverage (share answered, most confident
    first) for ``{label: {"coverage": [...], "risk": [...], "aurc": float}}``."""
    fig, ax = plt.subplots(figsize=(4, 3.4))
    for name, c in curves.items():
        ax.plot(c["coverage"], c["risk"], lw=1.5, label=f"{name} (AURC {c['aurc']:.3f})")
        ax.axhline(c.get("risk_at_full", c["risk"][-1]), ls=":", c="grey", lw=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("coverage (share of items answered)")
    ax.set_ylabel("risk (error rate when answering)")
    ax.set_title(title or "selective prediction (test)")
    ax.legend(loc="upper left", fontsize=8)
    return save_figure(fig, path)


def _ci(m: dict[str, Any], digits: int = 3) -> str:
    return f"{m['value']:.{digits}f} [{m['ci_low']:.{digits}f}, {m['ci_high']:.{digits}f}]"


def trust_section(run_dir: str | Path) -> tuple[str, str, str] | None:
    """``(id, heading, html)`` of the "Selective prediction and conformal sets" report section, or
    None when ``metrics.json`` has neither. Writes ``risk_coverage.png`` into ``run_dir``."""
    import base64

    from medattn.report.html import table_html

    run = Path(run_dir)
    try:
        doc = json.loads((run / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    sel, conf = doc.get("selective") or {}, doc.get("conformal") or {}
    if not sel and not conf:
        return None
    parts = []
    if sel.get("coverage"):
        png = save_risk_coverage({"model": sel}, run / RISK_COVERAGE_PNG)
        data = base64.b64encode(png.read_bytes()).decode()
        parts.append(f"<p>Risk–coverage: the model answers only its most confident items; AURC (area under the "
                     f"curve, lower is better) = {sel['aurc']:.4f}, error rate when answering everything "
                     f"{sel['risk_at_full']:.4f} ({sel['n']} decisions).</p>"
                     f'<img alt="risk-coverage" src="data:image/png;base64,{data}">')
    rows = [[k.replace("alpha_", "α = ").replace("_", " "), f"{v['target_coverage']:.2f}", _ci(v["coverage"]),
             _ci(v["mean_set_size"], 2)] for k, v in conf.items() if isinstance(v, dict) and "coverage" in v]
    if rows:
        parts.append(f"<p>Split-conformal prediction sets calibrated on {html.escape(str(conf.get('calibrated_on')))} "
                     f"({conf.get('n_calibration')} items); empirical coverage and mean set size on "
                     f"{html.escape(str(doc.get('split')))} with {html.escape(str(doc.get('ci')))} CIs.</p>"
                     + table_html(["level", "target coverage", "coverage", "mean set size"], rows))
    return "selective", "Selective prediction and conformal sets", "".join(parts)
