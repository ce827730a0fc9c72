"""Model card: what a bundle is for, what it was trained on, how it scored, where it fails.

``bundle.json`` carries ``card`` (built by :func:`build_card` when the bundle is saved):

- ``intended_use`` and ``limitations``: the recipe's ``card`` section (or its ``description``),
  plus limitations medattn knows of (synthetic training data, input size, few groups, no
  external evaluation yet);
- ``training_data``: format, data folder name, items and groups per split, class balance,
  ``synthetic`` flag;
- ``evaluation``: the test metrics with CIs, and ``external`` evaluations appended by
  ``medattn evaluate --data`` through :func:`append_external_evaluation`;
- ``research_use_only``, medattn version and date.
"""

from __future__ import annotations

import datetime as _dt
import json
import zipfile
from pathlib import Path
from typing import Any

from medattn.errors import BundleError

__all__ = ["build_card", "append_external_evaluation", "format_card", "RESEARCH_ONLY", "EXCHANGEABILITY"]

RESEARCH_ONLY = "Research use only: not a medical device, not for diagnosis or treatment decisions."
EXCHANGEABILITY = ("Prediction sets contain the true class at the promised rate (e.g. 90%) only for images like the "
                   "validation images they were calibrated on — the same kind of patients, scanners and staining; on "
                   "images from another hospital or scanner the promise can fail, so every external evaluation "
                   "below says whether it held.")
_MAX_EXTERNAL = 50


def _metric_values(metrics: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in (metrics or {}).items():
        if isinstance(v, dict) and "value" in v:
            out[k] = {"value": v["value"], "ci": [v.get("ci_low"), v.get("ci_high")]}
        elif isinstance(v, (int, float)):
            out[k] = {"value": v}
    return out


def build_card(meta: dict[str, Any]) -> dict[str, Any]:
    """The card of a bundle from its metadata (recipe, training data, metrics, trust numbers)."""
    from medattn import __version__

    recipe = meta.get("recipe") or {}
    section = recipe.get("card") or {}
    td = meta.get("training_data") or {}
    synthetic = bool(meta.get("synthetic_data"))
    size = meta.get("input_size")
    contract = meta.get("contract") or {}
    limits = list(section.get("limitations") or [])
    if synthetic:
        limits.insert(0, "Trained on SYNTHETIC images: it has never seen real tissue or patients; "
                         "its outputs on real images mean nothing.")
    if contract:
        h, w = contract.get("height", [None] * 3), contract.get("width", [None] * 3)
        seen = f"{h[0]}×{w[0]}" if (h[0], w[0]) == (h[2], w[2]) else f"{h[0]}–{h[2]} × {w[0]}–{w[2]}"
        limits.append(f"Trained on {seen} px {contract.get('colour')} images resized to {size} px; larger "
                      "images must be tiled (`medattn predict --tile`, `medattn slide`), not shrunk.")
    splits = td.get("splits") or {}
    groups = (splits.get("train") or {}).get("groups")
    if groups is not None and groups < 30:
        limits.append(f"Only {groups} training groups (patients/source images): expect wide variation on new sites.")
    limits.append("Not yet evaluated on external data unless listed under evaluation.external.")
    root = td.get("path")
    return {
        "name": recipe.get("name") or meta.get("architecture", {}).get("name"),
        "intended_use": section.get("intended_use") or recipe.get("description") or
        f"Research on {meta.get('task', 'classification')} of {', '.join(meta.get('class_names', []))}.",
        "users": section.get("users") or "researchers",
        "research_use_only": RESEARCH_ONLY,
        "training_data": {
            "format": td.get("format"), "folder": Path(root).name if root else None,
            "splits": splits, "class_balance": td.get("prevalence_train"), "synthetic": synthetic,
            "source": section.get("data_source"),
        },
        "evaluation": {"split": "test", "metrics": _metric_values(meta.get("metrics") or {}),
                       "conformal_alpha_default": (meta.get("conformal") or {}).get("default_alpha"),
                       "conformal_assumption": EXCHANGEABILITY if meta.get("conformal") else None,
                       "ood_threshold_quantile": (meta.get("ood") or {}).get("threshold_quantile"),
                       "external": []},
        "limitations": limits,
        "medattn_version": meta.get("medattn_version", __version__),
        "date": _dt.date.today().isoformat(),
    }


def append_external_evaluation(bundle_dir: str | Path, record: dict[str, Any]) -> dict[str, Any]:
    """Append one external evaluation (data, n_items, n_groups, metrics) to a bundle folder's card.

    Only ``bundle.json`` changes (atomically); the weights and their checksum stay as they are.
    Zipped bundles are left untouched (returns the record unchanged).

    Raises:
        BundleError: not a bundle folder.
    """
    from medattn.io import atomic_write_text, to_jsonable

    p = Path(bundle_dir)
    if p.is_file() and zipfile.is_zipfile(p):
        return record
    jf = p / "bundle.json"
    if not jf.is_file():
        raise BundleError(f"'{p}' is not a bundle folder: bundle.json is missing")
    try:
        meta = json.loads(jf.read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"cannot read '{jf}': {exc}") from None
    card = meta.get("card") or build_card(meta)
    entry = {"date": _dt.date.today().isoformat(), **record,
             "metrics": _metric_values(record.get("metrics") or {})}
    ext = [e for e in card["evaluation"].get("external", []) if e.get("data") != entry.get("data")]
    card["evaluation"]["external"] = (ext + [entry])[-_MAX_EXTERNAL:]
    meta["card"] = card
    atomic_write_text(jf, json.dumps(to_jsonable(meta), indent=2) + "\n")
    return entry


def _fmt_metric(v: dict[str, Any]) -> str:
    val, ci = v.get("value"), v.get("ci")
    if not isinstance(val, (int, float)):
        return str(val)
    if ci and all(isinstance(c, (int, float)) for c in ci):
        return f"{val:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    return f"{val:.3f}"


def format_card(card: dict[str, Any], *, markdown: bool = False) -> str:
    """The card as text (``medattn info``) or Markdown (dashboard)."""
    b = "**" if markdown else ""
    lines = [f"{b}Model card: {card.get('name')}{b}", "", f"{b}{card.get('research_use_only', RESEARCH_ONLY)}{b}", ""]
    lines.append(f"Intended use: {card.get('intended_use')}")
    td = card.get("training_data") or {}
    counts = ", ".join(f"{s} {v.get('items')} items / {v.get('groups')} groups"
                       for s, v in (td.get("splits") or {}).items())
    lines.append(f"Training data: {td.get('format')} data in '{td.get('folder')}'"
                 + (" (SYNTHETIC)" if td.get("synthetic") else "") + (f"; {counts}" if counts else ""))
    if td.get("class_balance"):
        lines.append("Class balance (train): " + ", ".join(f"{k} {v:.1%}" for k, v in td["class_balance"].items()))
    ev = card.get("evaluation") or {}
    if ev.get("metrics"):
        lines.append(f"Evaluation ({ev.get('split', 'test')}, 95% CI): " +
                     "; ".join(f"{k} {_fmt_metric(v)}" for k, v in list(ev["metrics"].items())[:8]))
    if ev.get("conformal_assumption"):
        lines.append(f"Prediction sets: {ev['conformal_assumption']}")
    for e in ev.get("external") or []:
        m = "; ".join(f"{k} {_fmt_metric(v)}" for k, v in list((e.get("metrics") or {}).items())[:6])
        lines.append(f"External evaluation on '{Path(str(e.get('data'))).name}' ({e.get('n_items')} items, "
                     f"{e.get('date')}): {m}")
        g = e.get("conformal_coverage")
        if g:
            lines.append(f"  Coverage of the prediction sets there: {'held' if g.get('held') else 'NOT HELD'} — "
                         f"{g.get('message')}")
    lines.append("Limitations:")
    lines += [f"{'-' if markdown else ' -'} {x}" for x in card.get("limitations") or []]
    lines.append(f"medattn {card.get('medattn_version')}, {card.get('date')}")
    return "  \n".join(lines) if markdown else "\n".join(lines)
