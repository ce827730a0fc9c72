"""CLI verbs of the trust area: ``medattn info BUNDLE`` (model card, input contract, calibration)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]


def info(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder or .zip.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the card and trust numbers as JSON.")] = False,
) -> None:
    """Print BUNDLE's model card: intended use, training data, evaluation, limitations, and what
    its predictions are checked against (input contract, OOD threshold, conformal calibration)."""
    from medattn.bundle import read_bundle_files
    from medattn.trust.card import build_card, decision_text, format_card, input_text
    from medattn.trust.contract import bundle_mpp, size_text

    meta, _ = read_bundle_files(bundle)
    card = dict(meta.get("card") or build_card(meta))
    card.setdefault("decision", decision_text(meta))  # cards saved before decisions were stated
    card.setdefault("input", input_text(meta))
    contract, ood, conf = meta.get("contract") or {}, meta.get("ood") or {}, meta.get("conformal") or {}
    summary = {
        "model": f"{meta['architecture']['name']} ({meta.get('task')}, classes: {', '.join(meta['class_names'])})",
        "input": input_text(meta),
        "decision": card["decision"],
        "input_contract": {k: contract.get(k) for k in ("height", "width", "aspect", "colour", "resolution")}
        if contract else None,
        "ood": {k: ood.get(k) for k in ("method", "layers", "threshold", "threshold_quantile", "threshold_on")}
        if ood else None,
        "conformal": {k: conf.get(k) for k in ("score", "n", "calibrated_on", "default_alpha")} if conf else None,
        "temperature": meta.get("temperature"),
        "scale": {"mpp": bundle_mpp(meta), "object_scale": contract.get("object_scale")} if contract else None,
        "operating_points": _operating_points(meta),
    }
    if as_json:
        typer.echo(json.dumps({"card": card, **summary}, indent=2, default=str))
        return
    typer.echo(format_card(card))
    typer.echo("")
    typer.echo(f"Model: {summary['model']}")
    if contract:
        typer.echo(f"Input contract: trained on {size_text(contract)} {contract.get('colour')} images "
                   f"({contract.get('n_sampled')} sampled); inputs far larger or smaller are flagged")
        scale = summary["scale"] or {}
        if scale.get("mpp") or scale.get("object_scale"):
            fd = (scale.get("object_scale") or {}).get("fine_detail")
            typer.echo("Scale check: " + "; ".join(
                ([f"{scale['mpp']:g} µm per model pixel (inputs declaring another resolution by more than 25% "
                  "are warned about)"] if scale.get("mpp") else [])
                + ([f"fine-detail share of training images {fd[0]:.3f}–{fd[-1]:.3f} (a much coarser or finer "
                    "input is warned about: another magnification)"] if fd else [])))
    if ood:
        layers = ", ".join(ood.get("layers") or ["head"])
        typer.echo(f"Out-of-distribution check: {ood['method']} ({layers}), threshold {ood['threshold']:.4g} "
                   f"({100 * ood['threshold_quantile']:.0f}th percentile on {ood['threshold_on']})")
    for name, op in summary["operating_points"].items():
        typer.echo(f"Operating point {name}: {op}")
    if conf:
        typer.echo(f"Conformal sets: {conf['score']}, calibrated on {conf['calibrated_on']} ({conf['n']} items); "
                   f"alpha {conf['default_alpha']} unless chosen at prediction time")
    if meta.get("temperature"):
        typer.echo(f"Probabilities: temperature {meta['temperature']:.3f} fitted on validation")


def _operating_points(meta: dict) -> dict[str, str]:
    """The bundle's named decision thresholds, one line each (binary threshold, the positive view's
    Youden and screening points)."""
    out: dict[str, str] = {}
    if meta.get("task") == "binary" and meta.get("threshold") is not None:
        out["decision"] = f"P({meta['class_names'][-1]}) >= {float(meta['threshold']):.4g} (chosen on validation)"
    view = meta.get("positive_view") or {}
    if view:
        out[f"{view['name']} (youden)"] = (f"P({view['name']}) >= {float(view['threshold']):.4g} "
                                           f"({view.get('threshold_method', 'youden on validation')})")
        for op, rec in (view.get("operating_points") or {}).items():
            out[f"{view['name']} ({op})"] = (
                f"P({view['name']}) >= {float(rec['threshold']):.4g}: sensitivity >= {rec['target_sensitivity']:g} "
                f"on {rec['chosen_on']} (there: sensitivity {rec['valid_sensitivity']:.3f}, "
                f"specificity {rec['valid_specificity']:.3f})")
    return out


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    app.command("info")(info)
