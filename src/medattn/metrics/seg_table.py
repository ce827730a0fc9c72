"""Per-image segmentation metrics (pixel and instance) of mask folders, written as one CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from medattn.errors import DataError
from medattn.io import atomic_write_text
from medattn.metrics.instance import instance_metrics
from medattn.metrics.segmentation import segmentation_metrics

__all__ = ["SEG_TABLE_COLUMNS", "segmentation_row", "read_mask", "evaluate_mask_folders",
           "write_per_image_csv", "mean_row"]

SEG_TABLE_COLUMNS = ("image", "dice", "iou", "sensitivity", "specificity", "pixel_accuracy",
                     "aji", "aji_plus", "dq", "sq", "pq", "n_true", "n_pred")
_MASK_EXT = (".png", ".tif", ".tiff", ".bmp")


def segmentation_row(name: str, true: np.ndarray, pred: np.ndarray, match_iou: float = 0.5) -> dict[str, object]:
    """Every pixel and instance metric of one (ground truth, prediction) label-image pair."""
    row: dict[str, object] = {"image": name}
    row.update(segmentation_metrics(true, pred))
    row.update(instance_metrics(true, pred, match_iou))
    return row


def read_mask(path: str | Path) -> np.ndarray:
    """Read a label mask (PNG/BMP with Pillow, TIFF with tifffile) as a 2-D integer array."""
    p = Path(path)
    try:
        if p.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(p)
        else:
            from PIL import Image

            with Image.open(p) as im:
                arr = np.asarray(im)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a corrupt file
        raise DataError(f"{p}: cannot be read as a mask image ({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__})") from None
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        raise DataError(f"{p}: is a colour image; masks must be single-channel label images")
    if arr.ndim != 2:
        raise DataError(f"{p}: expected a 2-D mask, got shape {arr.shape}")
    return arr


def evaluate_mask_folders(
    true_dir: str | Path, pred_dir: str | Path, pred_prefix: str = "", match_iou: float = 0.5,
    on_bad_file: str = "error", skipped: dict[str, str] | None = None,
) -> list[dict[str, object]]:
    """Pair ``true_dir/<name>`` with ``pred_dir/<pred_prefix><name>`` and compute every metric.

    Args:
        on_bad_file: ``error`` raises on an unreadable mask; ``skip`` leaves its pair out and
            records ``{mask path: reason}`` in ``skipped`` (when given).

    Raises:
        DataError: a folder is missing, empty, or a ground-truth mask has no prediction; an
            unreadable mask under ``on_bad_file="error"``; no readable pair at all.
    """
    tdir, pdir = Path(true_dir), Path(pred_dir)
    for d, what in ((tdir, "ground-truth"), (pdir, "prediction")):
        if not d.is_dir():
            raise DataError(f"{what} folder {d} not found")
    files = sorted(f for f in tdir.iterdir() if f.suffix.lower() in _MASK_EXT)
    if not files:
        raise DataError(f"{tdir} holds no mask images ({', '.join(_MASK_EXT)})")
    missing = [f.name for f in files if not (pdir / f"{pred_prefix}{f.name}").is_file()]
    if missing:
        raise DataError(f"{pdir} lacks predictions for {len(missing)} masks, e.g. {pred_prefix}{missing[0]}; "
                        "check --pred-prefix or the folder")
    rows = []
    for f in files:
        try:
            pair = read_mask(f), read_mask(pdir / f"{pred_prefix}{f.name}")
        except DataError as exc:
            if on_bad_file != "skip":
                raise
            if skipped is not None:
                skipped[f.name] = str(exc)
            continue
        rows.append(segmentation_row(f.stem, *pair, match_iou))
    if not rows:
        raise DataError(f"no readable mask pair in {tdir} and {pdir}")
    return rows


def mean_row(rows: Iterable[dict[str, object]]) -> dict[str, float]:
    """Mean of every numeric metric over images (each image weighs the same)."""
    rows = list(rows)
    return {c: float(np.mean([float(r[c]) for r in rows])) for c in SEG_TABLE_COLUMNS[1:]} if rows else {}


def write_per_image_csv(rows: Iterable[dict[str, object]], path: str | Path) -> Path:
    """Write the per-image table (columns :data:`SEG_TABLE_COLUMNS`) atomically."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(SEG_TABLE_COLUMNS), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (repr(float(v)) if isinstance(v, float) else v) for k, v in r.items()})
    return atomic_write_text(path, buf.getvalue())
