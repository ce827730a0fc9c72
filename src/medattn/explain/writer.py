"""Write explanations: overlay PNGs, per-class galleries, a scores CSV, a summary and a report page.

Files under ``out``:

- ``<source>__<class>__<method>.png`` — input, blended heatmap and colour bar;
- ``gallery_<class>.png`` — every map of one class side by side;
- ``scores.csv`` — one row per map: probability, and with ground truth (``masks_dir`` or boxes)
  pointing game and energy inside the mask/boxes;
- ``summary.json`` — counts and mean scores (also of a random and a centre-Gaussian map on the
  same ground truth, for scale); ``explain_report.html`` — all of it on one self-contained page.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medattn.errors import DataError
from medattn.explain.explain import Explanation
from medattn.explain.faithfulness import (
    NIH_BOX_SPACE,
    boxes_to_mask,
    centre_gaussian_map,
    energy_in_mask,
    pointing_game,
    random_map,
)
from medattn.explain.overlay import gallery, overlay, overlay_figure
from medattn.io import atomic_write_bytes, atomic_write_json, atomic_write_text, ensure_dir

__all__ = ["write_explanations", "write_agcnn_views", "find_mask", "MASK_SUFFIXES"]

MASK_SUFFIXES = ("", "_mask", "_masks", "-mask", "_seg", "_label", "_labels", "_gt")
GALLERY_MAX = 48
_EXTS = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg", ".npy")


def find_mask(masks_dir: Path, source: str) -> Path | None:
    """The mask file of input ``source`` (stem) in ``masks_dir``: ``<stem><suffix><ext>``."""
    for suf in MASK_SUFFIXES:
        for ext in _EXTS:
            p = masks_dir / f"{source}{suf}{ext}"
            if p.is_file():
                return p
    return None


def _read_mask(path: Path) -> np.ndarray:
    try:
        if path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            from PIL import Image

            with Image.open(path) as im:
                arr = np.asarray(im)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read mask '{path}': {exc}; masks must be PNG/TIFF/NPY label images") from None
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    if arr.ndim != 2:
        raise DataError(f"mask '{path}' has shape {arr.shape}; expected a 2-D label image (0 = background)")
    return arr > 0


def _png(arr: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _box_lookup(boxes: dict[str, list[tuple[str, float, float, float, float]]], source: str, cls: str,
                names: dict[str, str]) -> list[tuple[float, float, float, float]] | None:
    key = names.get(source, source)
    rows = boxes.get(key)
    if rows is None:
        stem_map = {Path(k).stem: k for k in boxes}
        rows = boxes.get(stem_map.get(source, ""), None)
    if rows is None:
        return None
    return [r[1:] for r in rows if r[0].lower() == cls.lower()] or None


def write_explanations(
    results: Sequence[Explanation],
    out: str | Path,
    *,
    masks_dir: str | Path | None = None,
    boxes: dict[str, list[tuple[str, float, float, float, float]]] | None = None,
    box_space: tuple[int, int] | None = NIH_BOX_SPACE,
    file_names: dict[str, str] | None = None,
    colorbar: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Write overlays, galleries, ``scores.csv``, ``summary.json`` and ``explain_report.html``.

    Args:
        results: output of :func:`medattn.explain.explain` (with ``keep_images=True``).
        out: output folder (created).
        masks_dir: folder of ground-truth masks named after the inputs (``<stem>.png``,
            ``<stem>_mask.png``, ...; non-zero = lesion).
        boxes: ``read_bbox_csv`` output; a map is scored against its own class's boxes.
        box_space: ``(width, height)`` the boxes are given in (ChestX-ray14: 1024×1024).
        file_names: ``{source: file name}`` used to match box rows (``Image Index``).
        colorbar: draw the two-panel figure with a colour bar (else a plain blended PNG).
        seed: seed of the random baseline map.

    Returns:
        The summary (also written to ``summary.json``).
    """
    import pandas as pd

    root = ensure_dir(out)
    mdir = Path(masks_dir) if masks_dir is not None else None
    if mdir is not None and not mdir.is_dir():
        raise DataError(f"mask folder '{mdir}' not found; pass the folder holding <image stem>.png masks")
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    tiles: dict[str, list[tuple[np.ndarray, str]]] = {}
    used: set[str] = set()
    for e in results:
        if e.image is None:
            raise DataError(f"explanation of '{e.source}' carries no image; call explain(..., keep_images=True)")
        stem = e.file_stem
        k = 1
        while stem in used:
            k += 1
            stem = f"{e.file_stem}_{k}"
        used.add(stem)
        heat = e.heatmap_at()
        title = f"{e.class_name} p={e.probability:.2f} ({e.method})"
        png = overlay_figure(e.image, heat, title) if colorbar else _png(overlay(e.image, heat))
        atomic_write_bytes(root / f"{stem}.png", png)
        tiles.setdefault(e.class_name, []).append((overlay(e.image, heat), f"{e.source} {e.probability:.2f}"))
        row: dict[str, Any] = {"source": e.source, "class_index": e.class_index, "class": e.class_name,
                               "probability": round(e.probability, 6), "method": e.method, "layer": e.layer,
                               "overlay": f"{stem}.png", "ground_truth": "", "pointing_game": np.nan,
                               "energy_in_mask": np.nan, "random_pointing_game": np.nan,
                               "random_energy_in_mask": np.nan, "centre_pointing_game": np.nan,
                               "centre_energy_in_mask": np.nan}
        gt = None
        if mdir is not None:
            mp = find_mask(mdir, e.source)
            if mp is not None:
                gt = _read_mask(mp)
                row["ground_truth"] = mp.name
        if gt is None and boxes is not None:
            bx = _box_lookup(boxes, e.source, e.class_name, file_names or {})
            if bx is not None:
                gt = boxes_to_mask(bx, heat.shape, box_space)
                row["ground_truth"] = f"{len(bx)} box(es)"
        if gt is not None and gt.any():
            h = heat if gt.shape == heat.shape else e.heatmap_at(gt.shape)
            hh, ww = gt.shape
            for pre, m in (("", h), ("random_", random_map(hh, ww, rng)), ("centre_", centre_gaussian_map(hh, ww))):
                row[f"{pre}pointing_game"] = pointing_game(m, gt)
                row[f"{pre}energy_in_mask"] = energy_in_mask(m, gt)
        rows.append(row)
    df = pd.DataFrame(rows)
    atomic_write_text(root / "scores.csv", df.to_csv(index=False))
    for cls, items in tiles.items():
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in cls)
        atomic_write_bytes(root / f"gallery_{safe}.png",
                           gallery([t for t, _ in items[:GALLERY_MAX]], [s for _, s in items[:GALLERY_MAX]],
                                   title=f"{cls} ({min(len(items), GALLERY_MAX)} of {len(items)})"))
    summary = _summary(df, results)
    atomic_write_json(root / "summary.json", summary)
    _report(root, df, summary, sorted(tiles))
    return summary


def _summary(df: Any, results: Sequence[Explanation]) -> dict[str, Any]:
    scored = df[df["ground_truth"] != ""] if len(df) else df
    keys = ["pointing_game", "energy_in_mask", "random_pointing_game", "random_energy_in_mask",
            "centre_pointing_game", "centre_energy_in_mask"]
    means = {k: float(scored[k].mean()) for k in keys} if len(scored) else {}
    per_class = {}
    for cls, g in df.groupby("class", sort=True):
        gs = g[g["ground_truth"] != ""]
        per_class[str(cls)] = {"maps": int(len(g)), "mean_probability": float(g["probability"].mean()),
                               "scored": int(len(gs)),
                               **({k: float(gs[k].mean()) for k in keys[:2]} if len(gs) else {})}
    return {
        "images": len({e.item for e in results}),
        "maps": len(results),
        "method": results[0].method if results else None,
        "layer": results[0].layer if results else None,
        "scored_maps": int(len(scored)),
        "mean_scores": means,
        "per_class": per_class,
    }


def _report(root: Path, df: Any, summary: dict[str, Any], classes: list[str]) -> None:
    import json

    from medattn.report.html import Report, img_tag, table_html

    rep = Report(f"medattn explain: {summary.get('method')} at layer {summary.get('layer')}")
    cols = ["source", "class", "probability", "ground_truth", "pointing_game", "energy_in_mask"]
    body = table_html(cols, [[r[c] if not (isinstance(r[c], float) and np.isnan(r[c])) else "" for c in cols]
                             for r in df.to_dict("records")])
    rep.add("scores", "Scores", body + "<pre>" + json.dumps(summary.get("mean_scores", {}), indent=2) + "</pre>")
    gal = ""
    for cls in classes:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in cls)
        p = root / f"gallery_{safe}.png"
        if p.is_file():
            gal += f"<h3>{cls}</h3>" + img_tag(p, f"gallery {cls}", 900)
    rep.add("galleries", "Per-class galleries", gal)
    rep.write(root / "explain_report.html")


def write_agcnn_views(predictor: Any, items: Sequence[Any], sources: Sequence[str], out: str | Path,
                      batch_size: int = 8) -> list[Path]:
    """Write ``<source>__agcnn_view.png`` (image + box, heatmap, mask, crop, branch probabilities)
    for each input of an AG-CNN bundle; returns the written paths."""
    from medattn.explain.agcnn_view import agcnn_figure, agcnn_view

    root = ensure_dir(out)
    mean, std = predictor.meta["mean"], predictor.meta["std"]
    paths: list[Path] = []
    for s in range(0, len(items), batch_size):
        x = predictor.preprocess(list(items[s : s + batch_size]))
        views = agcnn_view(predictor.model, x, mean=mean, std=std)
        m = np.asarray(mean, np.float32)[:, None, None]
        sd = np.asarray(std, np.float32)[:, None, None]
        for k, v in enumerate(views):
            disp = np.clip(x[k].numpy() * sd + m, 0, 1).transpose(1, 2, 0)
            disp = disp[..., 0] if disp.shape[-1] == 1 else disp
            name = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in sources[s + k])
            p = root / f"{name}__agcnn_view.png"
            atomic_write_bytes(p, agcnn_figure(v, disp, predictor.class_names))
            paths.append(p)
    return paths


def write_answers(explanations: Sequence[Any], out: str | Path) -> dict[str, dict[str, Any]]:
    """``predictions.json``: each explained image's answer from the one inference entry
    (probabilities, decision, warnings, prediction set), keyed by source; returns it."""
    import json

    from medattn.infer.records import response_fields
    from medattn.io import atomic_write_text, to_jsonable

    answers: dict[str, dict[str, Any]] = {}
    for e in explanations:
        if e.answer is not None and e.source not in answers:
            answers[e.source] = response_fields(e.answer)
    atomic_write_text(ensure_dir(out) / "predictions.json", json.dumps(to_jsonable(answers), indent=2) + "\n")
    return answers
