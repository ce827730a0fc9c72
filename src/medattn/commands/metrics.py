"""CLI verbs of the metrics area: ``compare`` (paired bootstrap of two runs), ``seg-metrics``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medattn.commands.options import CiLevel, NBoot, OnBadFile, Seed, on_bad_file_mode, renamed

__all__ = ["register"]

_OldAlpha = renamed("--alpha", "--ci-level", "compare's confidence level, e.g. --ci-level 0.95; --alpha is the "
                                              "conformal miscoverage of predict")


def _fmt(v: float) -> str:
    return "nan" if v != v else f"{v:.4f}"


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""

    @app.command()
    def compare(
        run_a: Annotated[Path, typer.Argument(help="Run folder (or its test_predictions.csv) of model A, e.g. the baseline.")],
        run_b: Annotated[Path, typer.Argument(help="Run folder (or CSV) of model B, e.g. the attention model.")],
        n_boot: NBoot = 1000,
        seed: Seed = 0,
        ci_level: CiLevel = 0.95,
        out: Annotated[Path | None, typer.Option(help="Also write the comparison as JSON here.")] = None,
        old_alpha: _OldAlpha = None,
    ) -> None:
        """Paired bootstrap CI and p-value of B - A on the same test items (refuses different items)."""
        from medattn.io import atomic_write_json
        from medattn.metrics.compare import compare_prediction_tables

        res = compare_prediction_tables(run_a, run_b, n_boot=n_boot, seed=seed, alpha=1 - ci_level)
        level = f"{100 * ci_level:g}"
        typer.echo(f"A = {res['run_a']}\nB = {res['run_b']}\n{res['n_items']} items, resampling "
                   f"{res['resampled']}" + (f" ({res['n_groups']} patients)" if res["n_groups"] else ""))
        typer.echo(f"{'metric':<20}{'A':>9}{'B':>9}{'B - A':>9}   {level}% CI{'':>12}p")
        for name, m in res["metrics"].items():  # type: ignore[union-attr]
            ci = f"[{_fmt(m['ci_low'])}, {_fmt(m['ci_high'])}]"
            typer.echo(f"{name:<20}{_fmt(m['value_a']):>9}{_fmt(m['value_b']):>9}{_fmt(m['diff']):>9}   "
                       f"{ci:<20}{_fmt(m['p_value'])}")
        if out is not None:
            atomic_write_json(out, res)
            typer.echo(f"wrote {out}")

    @app.command("seg-metrics")
    def seg_metrics(
        true_dir: Annotated[Path, typer.Argument(help="Folder of ground-truth instance masks (0 = background).")],
        pred_dir: Annotated[Path, typer.Argument(help="Folder of predicted instance masks with the same names.")],
        out: Annotated[Path, typer.Option(help="Per-image metrics CSV to write.")] = Path("segmentation_metrics.csv"),
        pred_prefix: Annotated[str, typer.Option(help="Prefix of prediction file names, e.g. pred_.")] = "",
        match_iou: Annotated[float, typer.Option(min=0.0, max=1.0, help="IoU above which instances match (PQ).")]
        = 0.5,
        on_bad_file: OnBadFile = None,
    ) -> None:
        """Per-image Dice, IoU, sensitivity, specificity, AJI, AJI+, DQ/SQ/PQ of two mask folders
        (--on-bad-file skip leaves out the pairs with an unreadable mask and names them)."""
        from medattn.metrics.seg_table import evaluate_mask_folders, mean_row, write_per_image_csv

        skipped: dict[str, str] = {}
        rows = evaluate_mask_folders(true_dir, pred_dir, pred_prefix, match_iou,
                                     on_bad_file=on_bad_file_mode(on_bad_file), skipped=skipped)
        write_per_image_csv(rows, out)
        means = mean_row(rows)
        for why in list(skipped.values())[:20]:
            typer.echo(f"skipped {why}", err=True)
        typer.echo(f"{len(rows)} images -> {out}" + (f" ({len(skipped)} pair(s) with an unreadable mask left out)"
                                                      if skipped else ""))
        typer.echo("mean " + ", ".join(f"{k} {means[k]:.4f}" for k in ("dice", "aji", "aji_plus", "pq")))
