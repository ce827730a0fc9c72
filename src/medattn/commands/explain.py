"""CLI verbs of the explain area (registered on the main Typer app)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medattn.commands.options import BatchSize, OnBadFile, on_bad_file_mode

__all__ = ["register", "expand_images", "screen", "write_skipped"]

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm")


def expand_images(paths: list[Path]) -> list[Path]:
    """Files as given, folders expanded to their image files (sorted, non-recursive)."""
    from medattn.errors import DataError

    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTS)
            if not found:
                raise DataError(f"folder '{p}' holds no image files ({', '.join(IMAGE_EXTS)})")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(f"image '{p}' not found; pass image files or folders of images")
    return out


def screen(files: list[Path], on_bad_file: str | None) -> tuple[list[Path], dict[str, str]]:
    """``(readable files, {unreadable file: problem})`` under ``--on-bad-file`` (``error``: one line
    naming the first bad file, before any output exists)."""
    from medattn.data.validate import screen_images

    return screen_images(files, on_bad_file_mode(on_bad_file))


def write_skipped(bad: dict[str, str], out: Path) -> None:
    """List the files ``--on-bad-file skip`` left out in OUT/bad_files.csv and say so on stderr."""
    from medattn.data.images import BadFilePolicy

    if bad:
        BadFilePolicy("skip", bad=bad).write(out / "bad_files.csv")
        first, why = next(iter(bad.items()))
        typer.echo(f"skipped {len(bad)} unreadable file(s), listed in {out / 'bad_files.csv'} "
                   f"(first: {first}, {why})", err=True)


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""

    @app.command("explain")
    def explain_cmd(
        bundle: Annotated[Path, typer.Argument(help="Model bundle folder or .zip.")],
        images: Annotated[list[Path], typer.Argument(help="Image files or folders of images.")],
        method: Annotated[str, typer.Option(
            help="gradcam, gradcam++, xgradcam, eigencam, scorecam, layercam, or attention "
                 "(the model's own spatial attention).")] = "gradcam",
        target: Annotated[str, typer.Option(
            help="top (predicted label/s), all (one map per class or finding), or a class name/index.")] = "top",
        layer: Annotated[str | None, typer.Option(
            help="Target layer (module name); default: the last feature map after the last attention block.")] = None,
        out: Annotated[Path, typer.Option(help="Output folder.")] = Path("runs/explain"),
        masks: Annotated[Path | None, typer.Option(
            exists=True, file_okay=False,
            help="Folder of ground-truth masks named after the images (<stem>.png, <stem>_mask.png).")] = None,
        boxes: Annotated[Path | None, typer.Option(
            exists=True, dir_okay=False,
            help="Boxes CSV in the ChestX-ray14 BBox_List_2017.csv layout (matched by file name and finding).")] = None,
        box_space: Annotated[int, typer.Option(
            min=0, help="Pixel size of the square space the boxes are given in (ChestX-ray14: 1024; 0 = the "
                        "image's own).")] = 1024,
        batch_size: BatchSize = 16,
        colorbar: Annotated[bool, typer.Option(help="Draw input + overlay + colour bar (else a plain overlay).")] = True,
        agcnn: Annotated[bool, typer.Option(
            help="For an AG-CNN bundle, also write <image>__agcnn_view.png (heatmap, mask, crop, branches).")] = True,
        on_bad_file: OnBadFile = None,
    ) -> None:
        """Explain images with a bundle: overlay PNGs named <image>__<target>__<method>.png, per-class
        galleries, scores.csv (pointing game and energy in mask/boxes when given), summary.json and
        explain_report.html."""
        from rich.console import Console

        from medattn.bundle import load_bundle
        from medattn.errors import ConfigError
        from medattn.explain.explain import explain
        from medattn.explain.faithfulness import read_bbox_csv
        from medattn.explain.writer import write_explanations

        if masks is not None and boxes is not None:
            raise ConfigError("pass either --masks or --boxes, not both")
        files = expand_images(images)
        box_rows = read_bbox_csv(boxes) if boxes is not None else None
        pred = load_bundle(bundle)
        files, bad = screen(files, on_bad_file)
        res = explain(pred, [str(f) for f in files], method=method, target=target, layer=layer,
                      batch_size=batch_size)
        summary = write_explanations(
            res, out, masks_dir=masks, boxes=box_rows,
            box_space=(box_space, box_space) if box_space > 0 else None,
            file_names={f.stem: f.name for f in files}, colorbar=colorbar,
        )
        if agcnn and hasattr(pred.model, "forward_all"):
            from medattn.explain.explain import source_name
            from medattn.explain.writer import write_agcnn_views

            write_agcnn_views(pred, [str(f) for f in files], [source_name(str(f), i) for i, f in enumerate(files)], out)
        write_skipped(bad, out)
        con = Console()
        con.print(f"{summary['maps']} map(s) of {summary['images']} image(s), {summary['method']} at "
                  f"layer {summary['layer']} → {out}")
        from medattn.explain.writer import write_answers

        answers = write_answers(res, out)  # the same answers and warnings as every other door
        for src, ans in answers.items():
            for w in ans.get("warnings") or []:
                con.print(f"[yellow]warning[/yellow] {src}: {w['code']}: {w['message']}", soft_wrap=True)
        ms = summary.get("mean_scores") or {}
        if summary.get("scored_maps"):
            con.print(
                f"against ground truth ({summary['scored_maps']} maps): pointing game "
                f"{ms['pointing_game']:.3f} (random {ms['random_pointing_game']:.3f}, centre "
                f"{ms['centre_pointing_game']:.3f}); energy in mask {ms['energy_in_mask']:.3f} "
                f"(random {ms['random_energy_in_mask']:.3f}, centre {ms['centre_energy_in_mask']:.3f})"
            )
