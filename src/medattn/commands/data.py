"""CLI verbs of the data area (registered on the main Typer app): ``split``, ``audit``, ``scan``,
``validate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medattn.commands.options import (
    DataFormat,
    Folds,
    GroupPattern,
    OnBadFile,
    Seed,
    SplitCsv,
    Workers,
    on_bad_file_mode,
)

__all__ = ["register"]

_MAX_LINES = 40


def _ratios(text: str) -> tuple[float, float, float]:
    from medattn.errors import ConfigError

    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3:
        raise ConfigError(f"--ratios must be three comma-separated numbers train,valid,test (e.g. 0.7,0.15,0.15); got '{text}'")
    return parts  # type: ignore[return-value]


def _table(title: str, df: object) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    t.add_column(df.index.name or "")  # type: ignore[attr-defined]
    for c in df.columns:  # type: ignore[attr-defined]
        t.add_column(str(c), justify="right")
    for idx, row in df.iterrows():  # type: ignore[attr-defined]
        t.add_row(str(idx), *[str(v) for v in row.tolist()])
    Console().print(t)


def split(
    data: Annotated[Path, typer.Argument(help="Data folder (or CSV manifest).")],
    out: Annotated[Path, typer.Option(help="Output split.csv.")] = Path("split.csv"),
    fmt: DataFormat = None,
    ratios: Annotated[str, typer.Option(help="train,valid,test fractions.")] = "0.7,0.15,0.15",
    seed: Seed = 0,
    folds: Folds = None,
    official: Annotated[bool, typer.Option(help="Keep official splits (PCam, CXR14 lists) when present.")] = True,
    group_pattern: GroupPattern = None,
) -> None:
    """Stratified group split (by patient when the format knows it) written as split.csv; with
    --folds K the non-test items also get a 'fold' column 0..K-1."""
    from medattn.data.audit import source_name_warning
    from medattn.data.splits import make_split, scan_grouped, split_summary, write_split_csv

    table = scan_grouped(data, fmt, group_pattern)
    if group_pattern is not None:
        typer.echo(f"groups from --group-pattern: {table['group'].nunique()} groups; "
                   f"{table.attrs.get('ungrouped', 0)} file(s) the pattern does not match stay alone")
    elif (w := source_name_warning(table["file"].astype(str).tolist(), table["group"].astype(str).to_numpy())):
        typer.echo(f"WARNING {w}")
    s = make_split(table, ratios=_ratios(ratios), seed=seed, folds=folds, respect_official=official)
    write_split_csv(s, out)
    _table(f"split of {data} ({table.attrs.get('format')})", split_summary(s))
    typer.echo(f"wrote {out} ({len(s)} items)")


def audit(
    data: Annotated[Path, typer.Argument(help="Data folder (or CSV manifest).")],
    split_csv: SplitCsv = None,
    fmt: DataFormat = None,
    out: Annotated[Path, typer.Option(help="Where to write audit.json.")] = Path("audit.json"),
    strict: Annotated[bool, typer.Option(help="Exit with code 1 on any leakage (patients or images shared across splits).")] = False,
    workers: Workers = 2,
    group_pattern: GroupPattern = None,
    on_bad_file: OnBadFile = None,
) -> None:
    """Leakage and quality audit: patients in several splits, exact and near-duplicate images
    across splits (also flipped, rotated, cropped, rescaled, recoloured or greyscale copies),
    duplicates within a split, class balance, unreadable/truncated/zero-byte files, and a warning
    when '<source>-...' file names have no groups (use --group-pattern). Writes audit.json. Without
    --split-csv the official split (if any) is audited. Bad files are always listed in audit.json;
    --on-bad-file error also ends with exit 2 naming the first."""
    import pandas as pd

    from medattn.data.audit import audit as run_audit
    from medattn.data.splits import read_split_csv, scan_grouped
    from medattn.data.validate import describe_problem
    from medattn.io import atomic_write_json

    if split_csv is not None:
        table = read_split_csv(split_csv)
    else:
        table = scan_grouped(data, fmt, group_pattern)
    rep = run_audit(data, table, workers=workers, group_pattern=group_pattern)
    atomic_write_json(out, rep)
    rows = {s: {"items": v["items"], "groups": v["groups"],
                **{f"label={k}": n for k, n in list(v["classes"].items())[:8]}} for s, v in rep["splits"].items()}
    _table(f"audit of {data}", pd.DataFrame.from_dict(rows, orient="index").fillna(0).rename_axis("split"))
    lines = [f"group '{o['group']}' in {', '.join(o['splits'])} ({o['items']} items)" for o in rep["group_overlap"]]
    lines += [f"identical: {' = '.join(f'{f} [{s}]' for f, s in zip(e['files'], e['splits'], strict=True))}"
              for e in rep["exact_duplicates"] if e["cross_split"]]
    lines += [f"near-identical: {e['file_a']} [{e['split_a']}] ~ {e['file_b']} [{e['split_b']}] "
              f"({e['match']}, r={e['correlation']:.3f}, detail r={e['detail_correlation']:.3f})"
              for e in rep["near_duplicates"] if e["cross_split"]]
    for line in lines[:_MAX_LINES]:
        typer.echo(f"LEAK {line}")
    if len(lines) > _MAX_LINES:
        typer.echo(f"... {len(lines) - _MAX_LINES} more in {out}")
    for b in rep["bad_files"][:_MAX_LINES]:
        typer.echo(f"BAD {b['file']}: {describe_problem(b['problem'])}")
    lk = rep["leakage"]
    typer.echo(f"leakage: {lk['group_overlap']} shared groups, {lk['exact_cross_split']} identical and "
               f"{lk['near_cross_split']} near-identical images across splits; {rep['within_split_duplicates']} "
               f"duplicates within splits; {len(rep['bad_files'])} bad files; "
               f"{len(rep['similar_across_splits'])} similar (not leakage). Wrote {out}")
    for w in rep["warnings"]:
        typer.echo(f"WARNING {w}")
    if not rep["has_splits"]:
        typer.echo("note: no split given or found; only duplicates and bad files were checked (use --split-csv)")
    typer.echo("PASSED" if rep["passed"] else "LEAKAGE FOUND")
    if rep["bad_files"] and on_bad_file_mode(on_bad_file) == "error":
        from medattn.errors import DataError

        b = rep["bad_files"][0]
        raise DataError(f"image '{b['file']}' is {describe_problem(b['problem'])} ({len(rep['bad_files'])} bad "
                        f"file(s), listed in {out}); re-copy or remove them, or pass --on-bad-file skip")
    if strict and not rep["passed"]:
        raise SystemExit(1)


def scan_cmd(
    data: Annotated[Path, typer.Argument(help="Data folder (or CSV manifest).")],
    fmt: DataFormat = None,
    out: Annotated[Path | None, typer.Option(help="Write the item table as CSV.")] = None,
) -> None:
    """Detect the format, list the items and print counts per class and split."""
    from medattn.data.formats import scan
    from medattn.io import atomic_write_text

    t = scan(data, fmt)
    extra = {k: v for k, v in t.attrs.items() if k in ("ignored", "absent", "unlisted", "unmatched_images",
                                                          "unmatched_masks", "unmatched_xml")}
    typer.echo(f"format: {t.attrs.get('format')}; {len(t)} items; {t['group'].nunique()} groups; {extra}")
    if t.attrs.get("classes"):
        typer.echo(f"classes (in order): {', '.join(map(str, t.attrs['classes']))}")
    if out is not None:
        atomic_write_text(out, t.to_csv(index=False))
        typer.echo(f"wrote {out}")


def validate(
    data: Annotated[Path, typer.Argument(help="Data folder (or CSV manifest).")],
    fmt: DataFormat = None,
    split_csv: SplitCsv = None,
    out: Annotated[Path | None, typer.Option(help="Also write the list of bad files (file,reason CSV).")] = None,
    workers: Workers = 2,
) -> None:
    """Decode every image (and mask) once and list the unusable ones: missing, zero-byte,
    truncated or undecodable files (only those of --split-csv when given). Exit code 1 when any
    is found."""
    from medattn.data.formats import scan
    from medattn.data.images import BadFilePolicy
    from medattn.data.splits import read_split_csv
    from medattn.data.validate import describe_problem, find_bad_files

    table = read_split_csv(split_csv) if split_csv is not None else scan(data, fmt)
    bad = find_bad_files(data, table, workers=workers)
    for b in bad[:_MAX_LINES]:
        typer.echo(f"BAD {b['path']}: {describe_problem(b['problem'])}")
    if len(bad) > _MAX_LINES:
        typer.echo(f"... {len(bad) - _MAX_LINES} more" + (f" in {out}" if out else " (use --out FILE)"))
    if out is not None:
        BadFilePolicy("skip", bad={b["path"]: describe_problem(b["problem"]) for b in bad}).write(out)
    n_h5 = int(table["file"].astype(str).str.contains("#").sum())
    note = f" ({n_h5} array items in HDF5 files not checked)" if n_h5 else ""
    typer.echo(f"checked {len(table) - n_h5} items under {data}{note}: "
               + (f"{len(bad)} bad file(s); train with --on-bad-file skip to leave them out" if bad else "all readable"))
    if bad:
        raise SystemExit(1)


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    app.command("split")(split)
    app.command("audit")(audit)
    app.command("scan")(scan_cmd)
    app.command("validate")(validate)
