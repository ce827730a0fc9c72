"""Model card: what a bundle is for, what it was trained on, how it scored, where it fails.

``bundle.json`` carries ``card`` (built by :func:`build_card` when the bundle is saved):

- ``intended_use`` and ``limitations``: the recipe's ``card`` section (or its ``description``),
  plus limitations medattn knows of (synthetic training data, input size and how larger inputs
  are handled, few groups, no external evaluation yet);
- ``decision``: how a prediction becomes a decision, with the threshold and what chose it
  (:func:`decision_text`);
- ``recipe``: the recipe's name and every ``--set`` override of the run (``recipe.overrides``);
- ``training_data``: format, data folder name, items and groups per split, class balance,
  ``synthetic`` flag;
- ``evaluation``: the test metrics with CIs, and ``external`` evaluations appended by
  ``medattn evaluate --data`` (:func:`add_external_evaluation`, written by
  :func:`medattn.bundle.append_external_evaluation`);
- ``research_use_only``, medattn version and date.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

__all__ = ["build_card", "add_external_evaluation", "format_card", "decision_text", "input_text", "RESEARCH_ONLY",
           "EXCHANGEABILITY"]

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


def _side(size: Any) -> str:
    """``48 px`` or ``64×48 px`` (width × height) from an ``input_size``."""
    if isinstance(size, (list, tuple)) and len(size) == 2 and size[0] != size[1]:
        return f"{size[1]}×{size[0]} px"
    return f"{size[0] if isinstance(size, (list, tuple)) else size} px"


def _seg_window(meta: dict[str, Any]) -> str:
    ev = (meta.get("recipe") or {}).get("evaluation") or {}
    return _side(ev.get("tile_size") or meta.get("input_size"))


def input_text(meta: dict[str, Any]) -> str:
    """How an image reaches the network: resized (classification) or tiled (segmentation)."""
    chans = f"{meta.get('in_chans')} channel(s)"
    if meta.get("task") == "segmentation":
        return (f"images of any size, predicted by overlapping {_seg_window(meta)} tiles "
                f"(trained on {_side(meta.get('input_size'))} crops), {chans}")
    return f"images resized to {_side(meta.get('input_size'))}, {chans}"


def threshold_rule(method: str | None, *, short: bool = False) -> str:
    """What chose a decision threshold, from the recipe's ``evaluation.threshold`` (or a positive
    view's record): the card's sentence, or the dashboard's ``short`` form."""
    m = str(method or "").lower()
    if "youden" in m:
        return ("chosen on validation for Youden's J" if short else
                "chosen by Youden's J (sensitivity + specificity − 1, maximised) on the validation split")
    if m == "fixed":
        return "fixed at 0.5 by the recipe"
    return "stored in the bundle"


def _threshold_method(meta: dict[str, Any]) -> str:
    return threshold_rule(((meta.get("recipe") or {}).get("evaluation") or {}).get("threshold"))


def decision_text(meta: dict[str, Any]) -> str:
    """How the bundle turns probabilities into a decision, with its threshold(s) and what chose them."""
    names = list(meta.get("class_names") or [])
    task = meta.get("task", "binary")
    if task == "binary" and len(names) == 2:
        thr = float(meta.get("threshold", 0.5))
        return (f"{names[1]} when P({names[1]}) ≥ {thr:.3f}, else {names[0]}; threshold "
                f"{_threshold_method(meta)}")
    if task == "multiclass":
        out = "the class with the highest probability"
        view = meta.get("positive_view")
        if view:
            out += (f"; {view['name']} ({', '.join(view['classes'])}) when their summed probability ≥ "
                    f"{float(view['threshold']):.3f}, threshold {view.get('threshold_method', 'stored in the bundle')}")
        return out
    if task == "multilabel":
        th = meta.get("thresholds") or [0.5] * len(names)
        each = ", ".join(f"{n} {float(t):.3f}" for n, t in zip(names, th, strict=True))
        return f"each finding present when its probability ≥ its threshold ({_threshold_method(meta)}): {each}"
    if task == "segmentation":
        pp = meta.get("postprocess") or {}
        inst = f"; instances by the '{pp['method']}' post-processing chosen on validation" if pp.get("method") else ""
        from medattn.models.outputs import seg_target_of

        head = seg_target_of(meta)
        if head != "hover" and (len(names) > 2 or head == "three_class"):
            return "each pixel takes its likeliest class" + inst
        maps = ("; horizontal and vertical distance maps to each nucleus's centre separate touching nuclei"
                if head == "hover" else "")
        return (f"pixels with P({names[-1] if names else 'foreground'}) ≥ {float(meta.get('threshold', 0.5)):.3f}"
                + maps + inst)
    return "stored in the bundle"


def _overrides(recipe: dict[str, Any]) -> list[str]:
    return [str(o) for o in recipe.get("overrides") or []]


def build_card(meta: dict[str, Any]) -> dict[str, Any]:
    """The card of a bundle from its metadata (recipe, training data, metrics, trust numbers)."""
    from medattn import __version__
    from medattn.trust.contract import size_text

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
        seen = f"{size_text(contract)} {contract.get('colour')} images"
        if meta.get("task") == "segmentation":
            limits.append(f"Trained on random {_side(size)} crops of {seen}; images of any size are predicted "
                          f"by overlapping {_seg_window(meta)} tiles, never resized, so they must be at the "
                          "training scale.")
        else:
            limits.append(f"Trained on {seen} resized to {_side(size)}; larger images must be tiled "
                          "(`medattn predict --tile`, `medattn slide`), not shrunk.")
    splits = td.get("splits") or {}
    groups = (splits.get("train") or {}).get("groups")
    if groups is not None and groups < 30:
        limits.append(f"Only {groups} training groups (patients/source images): expect wide variation on new sites.")
    if _overrides(recipe):
        limits.append(f"The run changed the recipe '{recipe.get('name')}' (--set): "
                      f"{'; '.join(_overrides(recipe))}.")
    limits.append("Not yet evaluated on external data unless listed under evaluation.external.")
    root = td.get("path")
    no_test = bool(splits) and not (splits.get("test") or {}).get("items")
    return {
        "name": recipe.get("name") or meta.get("architecture", {}).get("name"),
        "intended_use": section.get("intended_use") or recipe.get("description") or
        f"Research on {meta.get('task', 'classification')} of {', '.join(meta.get('class_names', []))}.",
        "users": section.get("users") or "researchers",
        "research_use_only": RESEARCH_ONLY,
        "decision": decision_text(meta),
        "input": input_text(meta),
        "recipe": {"name": recipe.get("name"), "overrides": _overrides(recipe)},
        "training_data": {
            "format": td.get("format"), "folder": Path(root).name if root else None,
            "splits": splits, "class_balance": td.get("prevalence_train"), "synthetic": synthetic,
            "source": section.get("data_source"),
        },
        "evaluation": {"split": "valid" if no_test else "test", "metrics": _metric_values(meta.get("metrics") or {}),
                       "conformal_alpha_default": (meta.get("conformal") or {}).get("default_alpha"),
                       "conformal_assumption": EXCHANGEABILITY if meta.get("conformal") else None,
                       "ood_threshold_quantile": (meta.get("ood") or {}).get("threshold_quantile"),
                       "external": []},
        "limitations": limits,
        "medattn_version": meta.get("medattn_version", __version__),
        "date": _dt.date.today().isoformat(),
    }


def add_external_evaluation(meta: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """Add one external evaluation (data, n_items, n_groups, metrics) to the card of a bundle's
    metadata, in place (an earlier evaluation of the same data is replaced; the last 50 are kept).
    :func:`medattn.bundle.append_external_evaluation` writes it to a bundle folder.

    Returns:
        The card's new entry.
    """
    card = meta.get("card") or build_card(meta)
    entry = {"date": _dt.date.today().isoformat(), **record,
             "metrics": _metric_values(record.get("metrics") or {})}
    ext = [e for e in card["evaluation"].get("external", []) if e.get("data") != entry.get("data")]
    card["evaluation"]["external"] = (ext + [entry])[-_MAX_EXTERNAL:]
    meta["card"] = card
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
    if card.get("decision"):
        lines.append(f"Decision: {card['decision']}")
    if card.get("input"):
        lines.append(f"Input: {card['input']}")
    rec = card.get("recipe") or {}
    if rec.get("name"):
        changed = rec.get("overrides") or []
        lines.append(f"Recipe: {rec['name']}" + (f", changed for this run by --set {', '.join(changed)}"
                                                 if changed else " (no --set overrides)"))
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
