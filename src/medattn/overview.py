"""Dataset overview: what is in a data folder before anything is trained on it.

Counts per class and split, a montage of random samples per class, image sizes, intensity and
colour statistics, label co-occurrence (multi-label data), patients per split and images per
patient; segmentation data add region coverage and instances per image. Works for every format
through its scanner (:func:`medattn.data.formats.scan`).

When the data carry no official split and no ``split.csv`` is given, the counts use the split
``medattn train`` would make with default settings (70/15/15 by group, stratified, seed 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medattn.errors import DataError, MedattnError

__all__ = ["DatasetOverview", "dataset_overview", "overview_html", "write_overview", "overview_section", "mask_overlay"]

_TILE = 72


@dataclass
class DatasetOverview:
    """The figures of :func:`dataset_overview` (tables are pandas DataFrames)."""

    root: str
    fmt: str
    task: str
    n_items: int
    class_names: list[str]
    split_source: str
    counts: Any
    """Items per class (rows) and split (columns), with totals."""
    groups: Any
    """Per split: items, patients (groups), images per patient (mean, median, max)."""
    sizes: Any
    """Image width/height (min, median, max) and the most common sizes, over the sampled images."""
    intensity: Any
    """Per class: mean and std of each channel (0–255) and the share of grey images."""
    n_sampled: int
    cooccurrence: Any | None = None
    """Multi-label: items carrying both labels (the diagonal: items with the label)."""
    segmentation: dict[str, float] | None = None
    montage: np.ndarray | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of every table."""
        def tab(df: Any) -> Any:
            return None if df is None else {str(k): {str(c): _py(v) for c, v in row.items()}
                                            for k, row in df.to_dict(orient="index").items()}
        return {"root": self.root, "format": self.fmt, "task": self.task, "n_items": self.n_items,
                "class_names": self.class_names, "split_source": self.split_source, "n_sampled": self.n_sampled,
                "counts": tab(self.counts), "groups": tab(self.groups), "sizes": tab(self.sizes),
                "intensity": tab(self.intensity), "cooccurrence": tab(self.cooccurrence),
                "segmentation": self.segmentation}


def _py(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return None if not np.isfinite(v) else float(v)
    return v


def _labels(table: Any, fmt: str) -> tuple[str, list[str], np.ndarray]:
    """``(task, class names, per-item class index array | multi-hot matrix)``."""
    findings = table.attrs.get("findings")
    if findings and all(f in table.columns for f in findings):
        return "multilabel", list(findings), table[list(findings)].to_numpy().astype(np.int64)
    if fmt in ("seg_pairs", "monuseg") or "label" not in table.columns:
        return "segmentation", ["images"], np.zeros(len(table), np.int64)
    lab = table["label"].to_numpy().astype(np.int64)
    names = table.attrs.get("classes") or []
    if "class_name" in table.columns:
        by_idx = dict(zip(lab.tolist(), table["class_name"].astype(str), strict=True))
        names = names or [by_idx.get(i, str(i)) for i in range(int(lab.max(initial=0)) + 1)]
    if not names:
        names = ["normal", "tumour"] if fmt == "pcam" else [str(i) for i in range(int(lab.max(initial=0)) + 1)]
    return "classification", [str(n) for n in names], lab


def _splits(table: Any, split_csv: str | Path | None, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    from medattn.data.splits import _groups, make_split, read_split_csv

    if split_csv is not None:
        st = read_split_csv(split_csv)
        m = dict(zip(st["file"].astype(str), st["split"], strict=True))
        return np.array([m[f] for f in table["file"].astype(str)], object), _groups(table), f"split file {split_csv}"
    has_official = "split" in table.columns and table["split"].notna().all()
    st = make_split(table, seed=seed)
    src = "official split" if has_official else f"proposed split (70/15/15 by group, stratified, seed {seed})"
    return st["split"].to_numpy(object), st["group"].astype(str).to_numpy(), src


def _counts(task: str, names: list[str], y: np.ndarray, split: np.ndarray) -> Any:
    import pandas as pd

    order = [s for s in ("train", "valid", "test") if s in set(split)]
    rows = {}
    for k, n in enumerate(names):
        has = y[:, k] > 0 if task == "multilabel" else (y == k)
        rows[n] = {s: int((has & (split == s)).sum()) for s in order}
    if task == "multilabel":
        none = y.sum(1) == 0
        rows["(no finding)"] = {s: int((none & (split == s)).sum()) for s in order}
    df = pd.DataFrame.from_dict(rows, orient="index")
    df["total"] = df.sum(1)
    df.loc["all items"] = [int((split == s).sum()) for s in order] + [len(split)]
    return df


def _group_table(split: np.ndarray, groups: np.ndarray) -> Any:
    import pandas as pd

    rows = {}
    for s in [s for s in ("train", "valid", "test") if s in set(split)] + ["all"]:
        g = groups if s == "all" else groups[split == s]
        per = pd.Series(g).value_counts()
        rows[s] = {"items": len(g), "patients": int(per.size), "images/patient mean": round(float(per.mean()), 2),
                   "median": float(per.median()), "max": int(per.max())}
    return pd.DataFrame.from_dict(rows, orient="index")


def _sample(rng: np.random.Generator, idx: np.ndarray, k: int) -> list[int]:
    return sorted(rng.choice(idx, size=min(k, len(idx)), replace=False).tolist()) if len(idx) else []


def dataset_overview(root: str | Path, fmt: str | None = None, *, split_csv: str | Path | None = None,
                     per_class: int = 6, max_stats: int = 300, seed: int = 0, group_pattern: str | None = None,
                     **scan_kw: Any) -> DatasetOverview:
    """Scan ``root`` (any supported format) and compute the overview.

    Args:
        root: data folder or manifest (as for ``medattn train --data``).
        fmt: format name (default: detected).
        split_csv: a ``split.csv`` to count splits by (default: official, else the default split).
        per_class: montage samples per class.
        max_stats: images read (stratified by class) for size and intensity statistics.
        seed: sampling seed.
        group_pattern: regular expression naming the patient/source image in class-folder file
            names (as ``medattn split --group-pattern``); patients per split count these groups.
    """
    import pandas as pd

    from medattn.data.formats import read_item, scan

    if group_pattern is not None:
        from medattn.data.splits import scan_grouped

        table = scan_grouped(root, fmt, group_pattern)
    else:
        table = scan(root, fmt, **scan_kw)
    fmt = table.attrs.get("format", fmt or "?")
    if len(table) == 0:
        raise DataError(f"'{root}' holds no items of format {fmt}; check the path and --format")
    unlisted = 0
    if split_csv is not None:  # the items a run used: those its split.csv lists
        from medattn.data.splits import read_split_csv

        listed = set(read_split_csv(split_csv)["file"].astype(str))
        keep = table["file"].astype(str).isin(listed).to_numpy()
        if not keep.any():
            raise DataError(f"{split_csv} lists none of the items of '{root}'; was it made for another data folder?")
        unlisted = int((~keep).sum())
        attrs = dict(table.attrs)
        table = table[keep].reset_index(drop=True)
        table.attrs = attrs
    task, names, y = _labels(table, fmt)
    split, groups, src = _splits(table, split_csv, seed)
    if unlisted:
        src += f" ({unlisted} item(s) of the folder not in it, left out)"
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(y[:, k] > 0 if task == "multilabel" else y == k) for k in range(len(names))]
    show = [_sample(rng, m, per_class) for m in members]
    budget = max(1, max_stats // max(1, len(names)))
    stat_idx = sorted(set(i for m in members for i in _sample(rng, m, budget)) | {i for s in show for i in s})
    files = table["file"].astype(str).to_numpy()
    pix: dict[int, np.ndarray] = {}
    for i in stat_idx:
        try:
            pix[i] = read_item(root, files[i])
        except (MedattnError, OSError):
            continue  # unreadable files are the audit's business; the overview skips them
    if not pix:
        raise DataError(f"none of the sampled images of '{root}' could be read; run `medattn audit {root}`")
    sizes = _size_table(pix)
    intensity = _intensity_table(pix, names, y, task)
    co = None
    if task == "multilabel":
        co = pd.DataFrame(y.T @ y, index=names, columns=names)
    seg = _seg_stats(root, table, fmt, list(pix)[:max_stats]) if task == "segmentation" else None
    montage = _montage(pix, show, names, table if task == "segmentation" else None, root, fmt)
    return DatasetOverview(root=str(root), fmt=fmt, task=task, n_items=len(table), class_names=names,
                           split_source=src, counts=_counts(task, names, y, split), groups=_group_table(split, groups),
                           sizes=sizes, intensity=intensity, n_sampled=len(pix), cooccurrence=co,
                           segmentation=seg, montage=montage)


def _size_table(pix: dict[int, np.ndarray]) -> Any:
    import pandas as pd

    hw = np.array([a.shape[:2] for a in pix.values()])
    common = pd.Series([f"{w}×{h}" for h, w in hw]).value_counts().head(3)
    rows = {"width": hw[:, 1], "height": hw[:, 0]}
    df = pd.DataFrame({k: {"min": int(v.min()), "median": float(np.median(v)), "max": int(v.max())}
                       for k, v in rows.items()}).T
    df["most common sizes"] = ", ".join(f"{s} ({n})" for s, n in common.items())
    return df


def _intensity_table(pix: dict[int, np.ndarray], names: list[str], y: np.ndarray, task: str) -> Any:
    import pandas as pd

    def stats(arrs: list[np.ndarray]) -> dict[str, float]:
        if not arrs:
            return {}
        flat = np.concatenate([(a if a.ndim == 3 else np.repeat(a[..., None], 3, 2))[..., :3].reshape(-1, 3)
                               for a in arrs]).astype(np.float64)
        grey = np.mean([a.ndim == 2 or bool(np.all(a[..., 0] == a[..., 1]) and np.all(a[..., 1] == a[..., 2]))
                        for a in arrs])
        m, s = flat.mean(0), flat.std(0)
        return {"images": len(arrs), "mean R": round(m[0], 1), "mean G": round(m[1], 1), "mean B": round(m[2], 1),
                "std R": round(s[0], 1), "std G": round(s[1], 1), "std B": round(s[2], 1),
                "grey share": round(float(grey), 3)}

    rows = {}
    for k, n in enumerate(names):
        sel = [a for i, a in pix.items() if (y[i, k] > 0 if task == "multilabel" else y[i] == k)]
        if sel:
            rows[n] = stats(sel)
    rows["all sampled"] = stats(list(pix.values()))
    return pd.DataFrame.from_dict(rows, orient="index")


def _mask_of(root: str | Path, table: Any, fmt: str, i: int, shape: tuple[int, int]) -> np.ndarray | None:
    base = Path(root)
    row = table.iloc[i]
    try:
        if fmt == "seg_pairs" and "mask" in table.columns:
            from medattn.data.images import read_mask

            return read_mask(base / str(row["mask"]))
        if fmt == "monuseg" and "xml" in table.columns:
            from medattn.data.formats.monuseg_xml import xml_to_instance_mask

            return xml_to_instance_mask(base / str(row["xml"]), shape)
    except (MedattnError, OSError):
        return None
    return None


def _seg_stats(root: str | Path, table: Any, fmt: str, idx: list[int]) -> dict[str, float] | None:
    from medattn.data.formats import read_item

    cover, inst = [], []
    for i in idx[:60]:
        shape = read_item(root, str(table.iloc[i]["file"])).shape[:2]
        m = _mask_of(root, table, fmt, i, shape)
        if m is None:
            continue
        cover.append(float((m > 0).mean()))
        inst.append(len(np.unique(m[m > 0])))
    if not cover:
        return None
    return {"masks read": len(cover), "foreground share mean": round(float(np.mean(cover)), 4),
            "foreground share min": round(float(np.min(cover)), 4), "foreground share max": round(float(np.max(cover)), 4),
            "labels per mask mean": round(float(np.mean(inst)), 1), "labels per mask max": int(np.max(inst))}


def mask_overlay(image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int] = (40, 220, 90)) -> np.ndarray:
    """The image with the region tinted and its outline drawn (``uint8`` RGB)."""
    from scipy import ndimage

    img = np.asarray(image)
    img = np.repeat(img[..., None], 3, 2) if img.ndim == 2 else img[..., :3]
    m = np.asarray(mask) > 0
    out = img.astype(np.float32)
    out[m] = 0.7 * out[m] + 0.3 * np.asarray(colour, np.float32)
    edge = m & ~ndimage.binary_erosion(m, iterations=max(1, min(m.shape) // 128))
    out[edge] = colour
    return out.clip(0, 255).astype(np.uint8)


def _tile(a: np.ndarray) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(a if a.ndim == 3 else np.repeat(a[..., None], 3, 2)).convert("RGB")
    im.thumbnail((_TILE, _TILE))
    canvas = Image.new("RGB", (_TILE, _TILE), (255, 255, 255))
    canvas.paste(im, ((_TILE - im.size[0]) // 2, (_TILE - im.size[1]) // 2))
    return np.asarray(canvas)


def _montage(pix: dict[int, np.ndarray], show: list[list[int]], names: list[str], seg_table: Any,
             root: str | Path, fmt: str) -> np.ndarray:
    """Rows of random samples per class (segmentation: images and their masks outlined)."""
    rows_img, row_names = [], []
    for name, idx in zip(names, show, strict=True):
        tiles = [_tile(pix[i]) for i in idx if i in pix]
        if seg_table is not None:
            over = []
            for i in idx:
                if i in pix:
                    m = _mask_of(root, seg_table, fmt, i, pix[i].shape[:2])
                    over.append(_tile(mask_overlay(pix[i], m)) if m is not None else _tile(pix[i]))
            rows_img.append(tiles)
            row_names.append("images")
            tiles, name = over, "masks"
        rows_img.append(tiles)
        row_names.append(name)
    return _draw_grid(rows_img, row_names)


def _draw_grid(rows: list[list[np.ndarray]], names: list[str]) -> np.ndarray:
    from PIL import Image, ImageDraw

    cols = max(1, max(len(r) for r in rows))
    label_w, pad = 150, 3
    h = len(rows) * (_TILE + pad) + pad
    w = label_w + cols * (_TILE + pad) + pad
    canvas = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, (tiles, name) in enumerate(zip(rows, names, strict=True)):
        y0 = pad + r * (_TILE + pad)
        draw.text((4, y0 + _TILE // 2 - 6), name[:24] if tiles else f"{name[:22]} (none)",
                  fill=(20, 20, 20))
        for c, t in enumerate(tiles):
            canvas.paste(Image.fromarray(t), (label_w + pad + c * (_TILE + pad), y0))
    return np.asarray(canvas)


def overview_html(ov: DatasetOverview, heading_level: int = 3) -> str:
    """The overview as an HTML fragment (tables + embedded montage) for a :class:`~medattn.report.html.Report`."""
    import html as _html
    import io

    from PIL import Image

    from medattn.report.html import img_tag, table_html

    def tab(df: Any, first: str) -> str:
        return table_html([first, *map(str, df.columns)], [[str(i), *(_fmt(v) for v in row)]
                                                           for i, row in zip(df.index, df.to_numpy(), strict=True)])

    hx = f"h{heading_level}"
    parts = [f'<p class="note">{ov.n_items} items, format <b>{_html.escape(ov.fmt)}</b>, task {ov.task}; '
             f"splits: {_html.escape(ov.split_source)}; image statistics from {ov.n_sampled} sampled images.</p>",
             f"<{hx}>Items per class and split</{hx}>", tab(ov.counts, "class"),
             f"<{hx}>Patients per split</{hx}>", tab(ov.groups, "split")]
    if ov.montage is not None:
        buf = io.BytesIO()
        Image.fromarray(ov.montage).save(buf, format="PNG")
        parts += [f"<{hx}>Random samples per class</{hx}>", img_tag(buf.getvalue(), "montage")]
    parts += [f"<{hx}>Image sizes</{hx}>", tab(ov.sizes, "axis"),
              f"<{hx}>Intensity and colour (0–255)</{hx}>", tab(ov.intensity, "class")]
    if ov.cooccurrence is not None:
        parts += [f"<{hx}>Label co-occurrence (items with both)</{hx}>", tab(ov.cooccurrence, "label")]
    if ov.segmentation:
        parts += [f"<{hx}>Masks</{hx}>", table_html(["statistic", "value"], [[k, _fmt(v)] for k, v in ov.segmentation.items()])]
    return "".join(parts)


def _fmt(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return "n/a" if not np.isfinite(v) else (f"{v:.0f}" if float(v).is_integer() else f"{v:.3g}")
    return str(v)


def write_overview(ov: DatasetOverview, out_dir: str | Path) -> Path:
    """Write ``overview.html`` (self-contained), ``montage.png``, ``class_counts.csv`` and ``overview.json``."""
    from medattn.data.images import write_image
    from medattn.io import atomic_write_json, atomic_write_text, ensure_dir
    from medattn.report.html import Report

    out = ensure_dir(out_dir)
    if ov.montage is not None:
        write_image(out / "montage.png", ov.montage)
    atomic_write_text(out / "class_counts.csv", ov.counts.to_csv(index_label="class"))
    atomic_write_json(out / "overview.json", ov.to_json())
    rep = Report(f"medattn dataset overview: {Path(ov.root).name}")
    rep.add("overview", "Dataset overview", overview_html(ov))
    rep.write(out / "overview.html")
    return out


def overview_section(run_dir: str | Path, **kw: Any) -> tuple[str, str, str]:
    """``(id, heading, html)`` of the overview of a run's data (its ``run.json`` and ``split.csv``),
    for the run's ``report.html``. A failure here never breaks the report: the section then says
    why the overview is unavailable."""
    import json

    run = Path(run_dir)
    try:
        info = json.loads((run / "run.json").read_text())
        split = run / "split.csv"
        ov = dataset_overview(info["data"], info.get("format"), split_csv=split if split.is_file() else None,
                              per_class=kw.pop("per_class", 4), max_stats=kw.pop("max_stats", 120), **kw)
    except Exception as exc:  # noqa: BLE001 - an optional section must not fail a finished run's report
        return ("overview", "Dataset overview", f'<p class="note">overview unavailable: {exc}</p>')
    return ("overview", "Dataset overview", overview_html(ov))
