"""Check every file of a data table up front (``medattn validate DATA``, and training before fit).

Each image (and mask file) listed in a scanner/split table is decoded once with
:func:`medattn.data.images.check_image`, the same diagnosis the leakage audit records, so a
zero-byte, truncated, undecodable or missing file is found before training instead of halfway
through an epoch. PCam items (``<x.h5>#<i>``) live in arrays, not files, and are not checked here.

:func:`apply_bad_file_policy` turns the findings into the ``on_bad_file`` behaviour: ``error``
raises one :class:`~medattn.errors.DataError` naming the first bad file; ``skip`` drops the items
(each bad file logged once through :class:`~medattn.data.images.BadFilePolicy`).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from medattn.data.images import IMAGE_EXTENSIONS, BadFilePolicy, check_image
from medattn.errors import DataError

__all__ = ["FILE_COLUMNS", "find_bad_files", "apply_bad_file_policy", "describe_problem", "screen_images"]

FILE_COLUMNS = ("file", "mask")
"""Table columns holding file paths that are checked (when they name an image file)."""

_WORDS = {
    "missing": "not found",
    "zero-byte": "empty (0 bytes)",
    "truncated": "truncated",
    "unreadable": "not a readable image",
}


def describe_problem(problem: str) -> str:
    """Plain words of a :func:`check_image` problem code (``zero-byte`` → ``empty (0 bytes)``)."""
    return _WORDS.get(problem, problem)


def _base(root: str | Path) -> Path:
    r = Path(root)
    return r.parent if r.is_file() else r  # a CSV manifest: paths are relative to its folder


def find_bad_files(root: str | Path, table: Any, *, workers: int = 2) -> list[dict[str, str]]:
    """Every unusable file of ``table`` (columns :data:`FILE_COLUMNS`), in table order.

    Args:
        root: data folder (or CSV manifest) the paths are relative to.
        table: scanner or split table (pandas DataFrame) with a ``file`` column.
        workers: reader threads.

    Returns:
        ``[{"file": item file, "path": bad path, "problem": code, "column": column}]``; ``file`` is
        the item's ``file`` entry (the one a bad mask belongs to), ``problem`` one of ``missing``,
        ``zero-byte``, ``truncated``, ``unreadable``. Convertible modes (RGBA, 16-bit) are fine.
    """
    base = _base(root)
    jobs: list[tuple[str, str, str]] = []
    for col in FILE_COLUMNS:
        if col not in table.columns:
            continue
        for item, value in zip(table["file"].astype(str), table[col], strict=True):
            v = str(value) if value is not None and value == value else ""
            if not v or "#" in v or Path(v).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            jobs.append((item, v, col))
    from medattn.progress import track

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, track("checking files", len(jobs)) as tick:
        infos = []
        for info in pool.map(lambda j: check_image(base / j[1]), jobs):
            infos.append(info)
            tick()
    return [{"file": item, "path": path, "problem": str(info["problem"]), "column": col}
            for (item, path, col), info in zip(jobs, infos, strict=True)
            if info["problem"] not in (None, "wrong-mode")]


def apply_bad_file_policy(root: str | Path, table: Any, mode: str, *, workers: int = 2,
                          policy: BadFilePolicy | None = None) -> tuple[Any, BadFilePolicy]:
    """Check ``table`` and apply ``on_bad_file``.

    Returns:
        ``(table without the bad items, policy holding them)``; the policy's
        :meth:`~medattn.data.images.BadFilePolicy.write` saves the list.

    Raises:
        DataError: ``mode == "error"`` and a file is bad (one line: the file, the problem, the fix).
        ConfigError: ``mode`` is neither ``error`` nor ``skip``.
    """
    pol = policy if policy is not None else BadFilePolicy(mode)  # type: ignore[arg-type]
    bad = find_bad_files(root, table, workers=workers)
    if not bad:
        return table, pol
    if pol.mode == "error":
        first = bad[0]
        more = f" ({len(bad) - 1} more bad file(s); list them with `medattn validate {root}`)" if len(bad) > 1 else ""
        raise DataError(f"image '{_base(root) / first['path']}' is {describe_problem(first['problem'])}{more}; "
                        "re-copy or remove it, or set data.on_bad_file: skip (--on-bad-file skip)")
    for b in bad:
        pol.handle(b["file"], DataError(f"{b['path']}: {describe_problem(b['problem'])}"))
    drop = {b["file"] for b in bad}
    out = table[~table["file"].astype(str).isin(drop)]
    out.attrs = dict(table.attrs)
    return out, pol


def screen_images(paths: Sequence[str | Path], mode: str, *, workers: int = 2) -> tuple[list[Path], dict[str, str]]:
    """Decode each image file of a list once and apply ``on_bad_file`` (verbs given image files).

    Files whose suffix is not in :data:`~medattn.data.images.IMAGE_EXTENSIONS` (e.g. DICOM) pass
    unchecked; the verb's own reader judges them.

    Returns:
        ``(readable paths in order, {bad path: problem in plain words})``.

    Raises:
        DataError: ``mode == "error"`` and a file is bad (one line naming the first), or no file
            is readable.
        ConfigError: ``mode`` is neither ``error`` nor ``skip``.
    """
    BadFilePolicy(mode)  # type: ignore[arg-type]  # validates the mode
    ps = [Path(p) for p in paths]
    todo = [p for p in ps if p.suffix.lower() in IMAGE_EXTENSIONS]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        infos = dict(zip(todo, pool.map(check_image, todo), strict=True))
    bad = {str(p): describe_problem(str(i["problem"])) for p, i in infos.items()
           if i["problem"] not in (None, "wrong-mode")}
    if bad and mode == "error":
        first, why = next(iter(bad.items()))
        more = f" ({len(bad) - 1} more bad file(s))" if len(bad) > 1 else ""
        raise DataError(f"image '{first}' is {why}{more}; re-copy or remove it, or pass --on-bad-file skip")
    good = [p for p in ps if str(p) not in bad]
    if not good:
        raise DataError(f"none of the {len(ps)} image(s) is readable ({next(iter(bad.items()))[0]}: "
                        f"{next(iter(bad.values()))}, ...)")
    return good, bad
