"""CLI verbs of the pipelines area: ``medattn pipeline segment-classify|evaluate|save`` and
``medattn overview``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from medattn.commands.options import (
    Chain,
    Classifier,
    DataFormat,
    DataPath,
    Dim,
    Fill,
    GroupPattern,
    Margin,
    Mode,
    NBoot,
    OnBadFile,
    Seed,
    Segmenter,
    SplitCsv,
    SplitName,
    renamed,
)

__all__ = ["register"]

pipeline_app = typer.Typer(help="Composite pipelines: segment, emphasise the regions, classify.",
                           no_args_is_help=True)

_OldCam = renamed("--cam", "--cam-method", "the CAM method; --cam is slide's switch for Grad-CAM maps")


def _pipeline(segmenter: Path | None, classifier: Path | None, chain: Path | None, mode: str, dim: float,
              fill: float, margin: float) -> Any:
    from medattn.errors import ConfigError
    from medattn.pipelines import SegmentClassifyPipeline, load_pipeline

    if chain is not None:
        if segmenter is not None or classifier is not None:
            raise ConfigError("pass either --chain or --segmenter and --classifier, not both")
        return load_pipeline(chain)
    if segmenter is None or classifier is None:
        raise ConfigError("pass --segmenter BUNDLE and --classifier BUNDLE (or --chain CHAINED_BUNDLE)")
    return SegmentClassifyPipeline(segmenter, classifier, mode=mode, dim=dim, fill=fill, margin=margin)


@pipeline_app.command("segment-classify")
def segment_classify(
    images: Annotated[list[Path], typer.Argument(help="Image files or folders of images.")],
    segmenter: Segmenter = None, classifier: Classifier = None, chain: Chain = None,
    mode: Mode = "mask", dim: Dim = 0.3, fill: Fill = 0.0, margin: Margin = 0.05,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("runs/segment-classify"),
    cam_method: Annotated[str, typer.Option(
        help="CAM method of the classifier's map (gradcam, gradcam++, …; none = no map).")] = "gradcam++",
    on_bad_file: OnBadFile = None,
    old_cam: _OldCam = None,
) -> None:
    """Segment IMAGES, emphasise the regions, classify them: writes <image>_mask/_region/_emphasised/_cam.png,
    results.csv and results.json (with the classifier-alone label beside the chained one)."""
    from medattn.commands.explain import expand_images, screen, write_skipped
    from medattn.pipelines.outputs import write_results

    pipe = _pipeline(segmenter, classifier, chain, mode, dim, fill, margin)
    files, bad = screen(expand_images(images), on_bad_file)
    res = pipe.run([str(f) for f in files], cam=None if cam_method.lower() == "none" else cam_method,
                   keep_images=True)
    write_results(res, out)
    write_skipped(bad, out)
    changed = sum(1 for r in res if r.alone and r.alone.get("label") != r.classification.get("label"))
    typer.echo(f"{len(res)} image(s) through {pipe.mode} chain → {out} ({changed} label(s) differ from the "
               "classifier alone)")


@pipeline_app.command("evaluate")
def evaluate(
    run: Annotated[Path, typer.Argument(help="The classifier's run folder (its split.csv picks the test items).")],
    segmenter: Segmenter = None, classifier: Classifier = None, chain: Chain = None,
    mode: Mode = "mask", dim: Dim = 0.3, fill: Fill = 0.0, margin: Margin = 0.05,
    data: DataPath = None,
    split: SplitName = "test",
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("runs/chain-eval"),
    n_boot: NBoot = 1000,
    seed: Seed = 0,
    save_chain: Annotated[Path | None, typer.Option(help="Also save the pair as a chained bundle here.")] = None,
    on_bad_file: OnBadFile = None,
) -> None:
    """Chained pipeline vs the classifier alone on the same items: paired bootstrap of every metric
    (--on-bad-file skip leaves unreadable items out of both and lists them in OUT/bad_files.csv)."""
    from medattn.commands.explain import screen, write_skipped
    from medattn.pipelines import evaluate_chain, items_from_run, save_chained_bundle
    from medattn.report.sections import comparison_table

    pipe = _pipeline(segmenter, classifier or (run / "bundle" if chain is None else None), chain, mode, dim, fill,
                     margin)
    paths, labels, groups = items_from_run(run, split, data)
    good, bad = screen(paths, on_bad_file)
    if bad:
        keep = [str(p) not in bad for p in paths]
        paths, labels, groups = good, labels[keep], groups[keep]
        write_skipped(bad, out)
    doc = evaluate_chain(pipe, [str(p) for p in paths], labels, groups=groups, n_boot=n_boot, seed=seed, out_dir=out)
    from medattn.report.html import Report

    rep = Report("medattn: chained pipeline vs classifier alone")
    rep.add("chain", f"Chained ({pipe.mode}) − classifier alone, {doc['n_items']} {split} items",
            comparison_table(doc))
    rep.write(Path(out) / "chain_comparison.html")
    if save_chain is not None:
        keep = {k: {kk: v[kk] for kk in ("value_a", "value_b", "diff", "ci_low", "ci_high", "p_value")}
                for k, v in doc["metrics"].items()}
        save_chained_bundle(pipe.segmenter, pipe.classifier, save_chain, **_settings(pipe),
                            evaluation={"split": split, "n_items": doc["n_items"], "metrics": keep})
    for k in ("accuracy", "macro_f1", "qwk", "balanced_accuracy", "auroc", "macro_auroc"):
        m = doc["metrics"].get(k)
        if m:
            typer.echo(f"{k}: alone {m['value_a']:.3f}, chained {m['value_b']:.3f}, diff {m['diff']:+.3f} "
                       f"[{m['ci_low']:+.3f}, {m['ci_high']:+.3f}] p={m['p_value']:.3f}")
    typer.echo(f"wrote {out}/chain_comparison.json and .html")


def _settings(pipe: Any) -> dict[str, Any]:
    return {k: v for k, v in pipe.settings().items() if k != "work_size"}


@pipeline_app.command("save")
def save(
    out: Annotated[Path, typer.Argument(help="Chained bundle folder to write.")],
    segmenter: Segmenter = None, classifier: Classifier = None,
    mode: Mode = "mask", dim: Dim = 0.3, fill: Fill = 0.0, margin: Margin = 0.05,
) -> None:
    """Save a segmenter and a classifier as one chained bundle (serve it with `medattn serve OUT`)."""
    from medattn.pipelines import save_chained_bundle

    pipe = _pipeline(segmenter, classifier, None, mode, dim, fill, margin)
    save_chained_bundle(pipe.segmenter, pipe.classifier, out, **_settings(pipe))
    typer.echo(f"wrote chained bundle {out} ({mode}); serve it with `medattn serve {out}`")


def overview(
    data: Annotated[Path, typer.Argument(help="Data folder (or CSV manifest / Data_Entry CSV).")],
    format: DataFormat = None,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("runs/overview"),
    split_csv: SplitCsv = None,
    per_class: Annotated[int, typer.Option(min=0, help="Montage samples per class.")] = 6,
    max_stats: Annotated[int, typer.Option(min=1, help="Images read for size/intensity statistics.")] = 300,
    seed: Seed = 0,
    group_pattern: GroupPattern = None,
) -> None:
    """Dataset overview: counts per class and split, montage, sizes, intensity/colour statistics,
    label co-occurrence (multi-label), patients per split → overview.html, montage.png, JSON/CSV.
    Splits: --split-csv, else the official split, else a 70/15/15 group split. Unreadable images are
    counted and left out of the statistics."""
    from medattn.overview import dataset_overview, write_overview

    ov = dataset_overview(data, format, split_csv=split_csv, per_class=per_class, max_stats=max_stats, seed=seed,
                          group_pattern=group_pattern)
    write_overview(ov, out)
    typer.echo(f"{ov.n_items} items, {len(ov.class_names)} classes ({ov.fmt}) → {out}/overview.html")


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    app.add_typer(pipeline_app, name="pipeline")
    app.command("overview")(overview)
