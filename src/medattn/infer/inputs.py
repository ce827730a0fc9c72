"""What ``medattn predict`` reads: files, folders (recursively), globs and CSV manifests."""

from __future__ import annotations

import csv
import glob
from pathlib import Path

from medattn.errors import DataError

__all__ = ["IMAGE_SUFFIXES", "resolve_inputs", "output_names"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom")
_PATH_COLUMNS = ("path", "file", "filename", "image", "image_path")


def _manifest(csv_path: Path) -> list[Path]:
    """Image paths of a CSV manifest: column ``path`` (or file/filename/image), else the first;
    relative paths are taken from the manifest's folder."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read manifest '{csv_path}': {exc}") from None
    if not rows:
        raise DataError(f"manifest '{csv_path}' is empty; give one image path per row under a 'path' header")
    header = [h.strip().lower() for h in rows[0]]
    col = next((header.index(c) for c in _PATH_COLUMNS if c in header), None)
    body = rows[1:] if col is not None else rows
    col = col or 0
    out = []
    for r in body:
        if len(r) > col and r[col].strip():
            p = Path(r[col].strip())
            out.append(p if p.is_absolute() else csv_path.parent / p)
    return out


def resolve_inputs(inputs: list[str], suffixes: tuple[str, ...] = IMAGE_SUFFIXES,
                   kind: str = "image files") -> list[Path]:
    """Every image named by ``inputs``, in order and without duplicates.

    A folder contributes its images recursively (sorted; by file suffix), a glob its matches,
    a ``.csv`` file the rows of its path column, any other file itself (its content decides later
    whether it is an image). Manifest rows that do not exist are kept, so they are reported as
    unreadable rather than dropped. ``suffixes`` and ``kind`` (in messages) name what a folder
    contributes (``medattn slide``: whole-slide images).

    Raises:
        DataError: an input that names nothing, or no images at all.
    """
    found: list[Path] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            hits = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in suffixes)
            if not hits:
                raise DataError(f"folder '{p}' holds no {kind} ({', '.join(suffixes)})")
            found += hits
        elif p.is_file() and p.suffix.lower() == ".csv":
            found += _manifest(p)
        elif p.is_file():
            found.append(p)
        elif glob.has_magic(raw):
            hits = sorted(Path(q) for q in glob.glob(raw, recursive=True) if Path(q).is_file())
            if not hits:
                raise DataError(f"pattern '{raw}' matches no file")
            found += hits
        else:
            raise DataError(f"input '{raw}' not found; give {kind} as files, folders, globs or a CSV manifest")
    seen: set[str] = set()
    out = []
    for f in found:
        key = str(f)
        if key not in seen:
            seen.add(key)
            out.append(f)
    if not out:
        raise DataError(f"no input {kind}; give them as files, folders, globs or a CSV manifest")
    return out


def output_names(paths: list[Path]) -> list[str]:
    """File-name-safe, unique output stems (the file stem, with its folders when stems repeat)."""
    stems = [p.stem for p in paths]
    if len(set(stems)) < len(stems):
        stems = [p.with_suffix("").as_posix().lstrip("/").replace("/", "__") for p in paths]
    names = ["".join(c if c.isalnum() or c in "-_.+" else "_" for c in s) for s in stems]
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0)
        seen[n] = k + 1
        out.append(n if k == 0 else f"{n}_{k}")
    return out
