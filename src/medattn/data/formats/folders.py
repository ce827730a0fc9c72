"""One folder per class (SIPaKMeD ``im_Dyskeratotic/…``, Herlev ``normal_columnar/…``).

Class order is stable and recorded: the order in ``classes.txt`` at the root when present (one
class folder name per line, e.g. ordered grades), otherwise sorted folder names. Images may sit
in sub-folders of a class folder. Unknown extensions and junk files (``._*``, ``Thumbs.db``,
hidden files) are ignored and counted in ``table.attrs["ignored"]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from medattn.data.formats.table import TableDataset
from medattn.data.images import IMAGE_EXTENSIONS, files_under, is_junk
from medattn.errors import DataError

__all__ = ["scan_folders", "FolderDataset", "class_order", "class_folders"]


def _canonical(folder: str, rx: Any) -> str | None:
    """Class name of a folder under ``class_pattern``: the first capture group (or whole match),
    lower-cased, runs of other characters than letters and digits turned into ``_``."""
    import re

    m = rx.search(folder)
    if m is None:
        return None
    name = m.group(1) if rx.groups else m.group(0)
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


def class_folders(root: str | Path, class_pattern: str | None = None) -> dict[str, list[str]]:
    """Class name → its folder names under ``root``. Without ``class_pattern`` each folder is a
    class; with it (a regular expression searched in the folder name) folders are named by the
    match, so ``carcinoma_in_situ_org_150_jpeg`` and ``Carcinoma-in-situ`` are both
    ``carcinoma_in_situ`` under ``^(.+?)(?:_org_\\d+.*)?$``; folders it does not match are ignored."""
    import re

    r = Path(root)
    if not r.is_dir():
        raise DataError(f"class folder root '{r}' not found; pass the folder holding one sub-folder per class")
    found = sorted(p.name for p in r.iterdir() if p.is_dir() and not is_junk(p))
    if class_pattern is None:
        return {f: [f] for f in found}
    try:
        rx = re.compile(class_pattern, re.IGNORECASE)
    except re.error as e:
        raise DataError(f"class_pattern {class_pattern!r} is not a valid regular expression: {e}") from None
    out: dict[str, list[str]] = {}
    for f in found:
        name = _canonical(f, rx)
        if name:
            out.setdefault(name, []).append(f)
    return out


def class_order(root: str | Path, classes: Sequence[str] | None = None, class_pattern: str | None = None) -> list[str]:
    """Class names in label order (explicit, ``classes.txt``, or sorted folder/class names)."""
    r = Path(root)
    found = sorted(class_folders(r, class_pattern))
    if classes is None and (r / "classes.txt").is_file():
        classes = [c.strip() for c in (r / "classes.txt").read_text().splitlines() if c.strip()]
    if classes is None:
        if not found:
            raise DataError(f"'{r}' has no class sub-folders; expected one folder per class")
        return found
    missing = [c for c in classes if c not in found]
    if missing:
        raise DataError(f"class folder(s) {missing} listed for '{r}' do not exist; present: {found}")
    return list(classes)


def scan_folders(root: str | Path, classes: Sequence[str] | None = None, group_pattern: str | None = None,
                 class_pattern: str | None = None) -> Any:
    """Table of every image: ``file, label, class_name, group, split``.

    ``group`` is the file itself (no patient information in a class-folder layout) unless
    ``group_pattern`` (a regular expression searched in the file name) says which part of the
    name identifies the source: its first capture group, or the whole match. Herlev-style names
    ``149146635-149146651-002.jpeg`` hold the source image first: ``group_pattern: "^(\\d+)-"``
    keeps crops of one source image on one side of a split; a file whose name the pattern does
    not match stays its own group (counted in ``attrs["ungrouped"]``, examples in
    ``ungrouped_examples``). ``class_pattern`` names classes by a regular expression on folder
    names (see :func:`class_folders`). ``split`` is empty. ``table.attrs`` holds ``classes`` (in order),
    ``ignored`` (count) and ``ignored_examples``.

    Raises:
        DataError: the pattern is not a valid regular expression.
    """
    import re

    import pandas as pd

    rx = None
    if group_pattern is not None:
        try:
            rx = re.compile(group_pattern)
        except re.error as e:
            raise DataError(f"group_pattern {group_pattern!r} is not a valid regular expression: {e}") from None
    r = Path(root)
    names = class_order(r, classes, class_pattern)
    folders_of = class_folders(r, class_pattern)
    rows, ignored, ungrouped = [], [], []
    for idx, name in enumerate(names):
        for p in sorted(q for folder in folders_of[name] for q in files_under(r / folder)):
            rel = p.relative_to(r).as_posix()
            if is_junk(p) or any(part.startswith(".") for part in p.relative_to(r).parts[:-1]) \
                    or p.suffix.lower() not in IMAGE_EXTENSIONS:
                ignored.append(rel)
                continue
            group = rel
            if rx is not None:
                m = rx.search(p.name)
                if m is None:
                    ungrouped.append(rel)
                else:
                    group = m.group(1) if rx.groups else m.group(0)
            rows.append({"file": rel, "label": idx, "class_name": name, "group": group, "split": None})
    if not rows:
        raise DataError(f"no images found in the class folders of '{r}' (extensions: {sorted(IMAGE_EXTENSIONS)})")
    df = pd.DataFrame(rows)
    df.attrs.update(classes=names, ignored=len(ignored), ignored_examples=ignored[:10], format="folders")
    if rx is not None:
        df.attrs.update(ungrouped=len(ungrouped), ungrouped_examples=ungrouped[:10])
    return df


class FolderDataset(TableDataset):
    """Class-folder dataset: ``(image, class index)``.

    Args:
        root: folder with one sub-folder per class.
        table: optional pre-filtered :func:`scan_folders` table (e.g. one split).
        classes: explicit class order (default: ``classes.txt`` or sorted).
        transform, mode, on_bad_file: see :class:`TableDataset`.
    """

    def __init__(
        self,
        root: str | Path,
        table: Any | None = None,
        *,
        classes: Sequence[str] | None = None,
        transform: Callable[..., Any] | None = None,
        mode: Literal["RGB", "L"] = "RGB",
        on_bad_file: Literal["error", "skip"] = "error",
        class_pattern: str | None = None,
    ) -> None:
        full = scan_folders(root, classes, class_pattern=class_pattern) if table is None else table
        names = full.attrs.get("classes") or class_order(root, classes, class_pattern)
        super().__init__(root, full, task="classification", transform=transform, mode=mode,
                         class_names=names, on_bad_file=on_bad_file)
