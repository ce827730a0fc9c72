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
    from medattn.trust.contract import size_text

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
        "ood": {k: ood.get(k) for k in ("method", "threshold", "threshold_quantile", "threshold_on")} if ood else None,
        "conformal": {k: conf.get(k) for k in ("score", "n", "calibrated_on", "default_alpha")} if conf else None,
        "temperature": meta.get("temperature"),
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
    if ood:
        typer.echo(f"Out-of-distribution check: {ood['method']}, threshold {ood['threshold']:.4g} "
                   f"({100 * ood['threshold_quantile']:.0f}th percentile on {ood['threshold_on']})")
    if conf:
        typer.echo(f"Conformal sets: {conf['score']}, calibrated on {conf['calibrated_on']} ({conf['n']} items); "
                   f"alpha {conf['default_alpha']} unless chosen at prediction time")
    if meta.get("temperature"):
        typer.echo(f"Probabilities: temperature {meta['temperature']:.3f} fitted on validation")


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    app.command("info")(info)
