"""Files of ``medattn pipeline segment-classify``: per-image panels, a CSV and ``results.json``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medattn.io import atomic_write_json, atomic_write_text, ensure_dir
from medattn.overview import mask_overlay
from medattn.pipelines.segment_classify import ChainResult

__all__ = ["write_results", "mask_overlay"]


def _label(res: dict) -> str:
    if "label" in res:
        return str(res["label"])
    return "|".join(res.get("labels", [])) or "none"


def write_results(results: Sequence[ChainResult], out_dir: str | Path) -> Path:
    """Write ``<stem>_mask.png``, ``<stem>_region.png``, ``<stem>_emphasised.png``,
    ``<stem>_cam.png``, ``results.csv`` and ``results.json`` under ``out_dir``.

    The results need their images (``run(..., keep_images=True)``) for the overlays.
    """
    from medattn.data.images import write_image
    from medattn.explain.overlay import overlay

    out = ensure_dir(out_dir)
    rows = ["source,label,confidence,label_alone,region_fraction,x0,y0,x1,y1"]
    seen: dict[str, int] = {}
    docs = []
    for r in results:
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in r.source)
        seen[stem] = seen.get(stem, 0) + 1
        if seen[stem] > 1:
            stem = f"{stem}_{seen[stem]}"
        write_image(out / f"{stem}_mask.png", (r.mask > 0).astype(np.uint8) * 255)
        write_image(out / f"{stem}_emphasised.png", r.emphasised)
        if r.image is not None:
            write_image(out / f"{stem}_region.png", mask_overlay(r.image, r.mask))
            if r.cam is not None:
                write_image(out / f"{stem}_cam.png", overlay(r.image, r.cam))
        label = _label(r.classification)
        probs = r.classification.get("probabilities", {})
        conf = probs.get(label, max(probs.values()) if probs else float("nan"))
        alone = _label(r.alone) if r.alone else ""
        rows.append(",".join([stem, label, f"{conf:.4f}", alone, f"{r.region_fraction:.4f}", *map(str, r.box)]))
        docs.append({**r.to_json(), "files": {k: f"{stem}_{k}.png" for k in ("mask", "emphasised", "region", "cam")
                                              if (out / f"{stem}_{k}.png").is_file()}})
    atomic_write_text(out / "results.csv", "\n".join(rows) + "\n")
    atomic_write_json(out / "results.json", {"results": docs})
    return out
