"""Result tables written as they come, so an interrupted run continues where it stopped.

A :class:`ResultLog` is a CSV file that grows by whole lines: each batch of rows is written,
flushed and fsync'ed at once, and a line cut by a crash (no trailing newline) is dropped when the
file is opened again. ``--resume`` reads the keys already present and skips those items; without
it an existing log is refused, so results are never mixed silently.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from medattn.errors import OutputError
from medattn.io import ensure_dir

__all__ = ["ResultLog", "flatten_result", "read_rows", "format_cell", "response_fields"]


def format_cell(v: Any) -> Any:
    """A value as a CSV cell (floats to 6 significant digits, lists of names ``;``-joined, lists of
    records such as ``warnings`` as one JSON list)."""
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)) and any(isinstance(x, dict) for x in v):
        return json.dumps(list(v), sort_keys=True, ensure_ascii=False, default=str)
    if isinstance(v, (list, tuple, set)):
        return ";".join(str(format_cell(x)) for x in v)
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True, default=str)
    return v


def flatten_result(res: dict[str, Any]) -> dict[str, Any]:
    """One predictor result as flat CSV columns, whatever keys the predictor returns.

    ``probabilities`` → ``prob_<class>``, ``thresholds`` → ``threshold_<class>``, other mappings →
    ``<key>_<subkey>``, lists → ``;``-joined (``warnings``: one JSON list), scalars as they are. The
    decision is ``predicted_label`` (``predicted_labels`` for multi-label), as ``true_label`` is
    the truth in evaluation tables.
    """
    out: dict[str, Any] = {}
    for k, v in res.items():
        k = {"label": "predicted_label", "labels": "predicted_labels"}.get(k, k)
        if k == "warnings":
            out[k] = json.dumps(list(v or []), sort_keys=True, ensure_ascii=False, default=str)
            continue
        if isinstance(v, dict):
            prefix = {"probabilities": "prob", "thresholds": "threshold"}.get(k, k)
            for sk, sv in v.items():
                out[f"{prefix}_{sk}"] = format_cell(sv)
        else:
            out[k] = format_cell(v)
    return out


def read_rows(path: str | Path) -> list[dict[str, str]]:
    """Rows of a CSV written by :class:`ResultLog` (a cut last line is ignored)."""
    p = Path(path)
    if not p.is_file():
        return []
    text = p.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    return list(csv.DictReader(io.StringIO(text)))


class ResultLog:
    """Append-only CSV keyed by one column (``path``, ``tile``), flushed after every batch.

    Args:
        path: the CSV file.
        key: column that identifies an item; :attr:`done` holds the keys already written.
        resume: continue an existing file (its header is kept); otherwise an existing file with
            rows is refused with the fix.
        columns: the header, when known up front; else the first :meth:`write` sets it, and a
            column that appears later widens it (the file is rewritten in one rename).
    """

    def __init__(self, path: str | Path, key: str, *, resume: bool, columns: Sequence[str] | None = None) -> None:
        self.path, self.key = Path(path), key
        ensure_dir(self.path.parent)
        rows = read_rows(self.path)
        if rows and not resume:
            raise OutputError(f"'{self.path}' already holds {len(rows)} results; pass --resume to continue "
                              "that run or choose another --out")
        self.columns: list[str] | None = None
        self._header: list[str] | None = list(columns) if columns is not None else None
        self.done: set[str] = set()
        if resume and self.path.is_file():
            self._truncate_partial_line()
            with open(self.path, encoding="utf-8") as fh:
                header = fh.readline()
            if header.strip():
                self.columns = next(csv.reader([header]))
                self.done = {r.get(key, "") for r in rows}
        elif self.path.exists():
            self.path.unlink()

    def _truncate_partial_line(self) -> None:
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.path, "r+b") as fh:
                fh.truncate(data.rfind(b"\n") + 1)

    def _start(self, columns: list[str]) -> None:
        if self.key not in columns:
            columns = [self.key, *columns]
        self.columns = columns
        self._append([columns])

    def _append(self, lines: list[list[Any]]) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(lines)
        try:
            with open(self.path, "a", encoding="utf-8", newline="") as fh:
                fh.write(buf.getvalue())
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise OutputError(f"cannot write '{self.path}': {exc.strerror or exc}") from None

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        """Append ``rows`` (one flush for the whole batch) and mark their keys done."""
        rows = list(rows)
        if not rows:
            return
        if self.columns is None and self._header is not None:  # the file appears with its first rows
            self._start(self._header)
        if self.columns is None:
            cols: list[str] = []
            for r in rows:
                cols += [k for k in r if k not in cols]
            self._start(cols)
        assert self.columns is not None
        new = [k for r in rows for k in r if k not in self.columns]
        if new:  # e.g. the first tiled input, or a compacted file continued: widen the header
            self._rewrite(read_rows(self.path), [*self.columns, *dict.fromkeys(new)])
        lines = [[format_cell(r.get(c, "")) for c in self.columns] for r in rows]
        self._append(lines)
        self.done.update(str(r[self.key]) for r in rows)


    def _rewrite(self, rows: list[dict[str, str]], columns: list[str]) -> None:
        """Replace the file by ``rows`` under ``columns`` in one rename (never half-written)."""
        from medattn.io import atomic_path

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        w.writerows([[r.get(c, "") or "" for c in columns] for r in rows])
        with atomic_path(self.path) as tmp:
            tmp.write_text(buf.getvalue(), encoding="utf-8")
        self.columns = columns

    def compact(self) -> list[str]:
        """Drop the columns that are empty in every row (the key column stays); returns their names.
        Called when a run ends; a later ``--resume`` widens the header again if needed."""
        rows = read_rows(self.path)
        if not rows or self.columns is None:
            return []
        empty = [c for c in self.columns if c != self.key and not any(r.get(c) for r in rows)]
        if empty:
            self._rewrite(rows, [c for c in self.columns if c not in empty])
        return empty


def response_fields(answer: dict[str, Any]) -> dict[str, Any]:
    """The JSON fields of one :meth:`Predictor.infer` answer: arrays become lists (tile scores) or
    are left to the files a door writes (segmentation maps: their shape and counts stay)."""
    import numpy as np

    out = {}
    for k, v in answer.items():
        if k in ("probability_map", "instance_labels", "image"):
            continue
        out[k] = np.round(np.nan_to_num(v, nan=-1.0), 6).tolist() if isinstance(v, np.ndarray) else v
    return out
