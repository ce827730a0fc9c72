"""MoNuSeg Aperio XML polygon annotations, rasterised to ``uint16`` instance masks.

An Aperio file holds ``Annotations/Annotation/Regions/Region/Vertices/Vertex[@X,@Y]``; each
region is one nucleus. Regions are rasterised in file order with :func:`skimage.draw.polygon`
(label = 1-based region order); where two polygons overlap the later one wins, as in the
MoNuSeg organisers' conversion. Degenerate regions (fewer than 3 vertices or no pixel) are
counted, not fatal.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medattn.data.formats.table import TableDataset
from medattn.data.images import IMAGE_EXTENSIONS, is_junk
from medattn.errors import DataError

__all__ = ["read_aperio_xml", "rasterise_polygons", "xml_to_instance_mask", "write_aperio_xml",
           "scan_monuseg", "MoNuSegDataset"]


def read_aperio_xml(path: str | Path) -> list[np.ndarray]:
    """Polygons of an Aperio XML file, each a ``K×2`` float array of ``(x, y)`` vertices."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"annotation file '{p}' not found")
    try:
        root = ET.parse(p).getroot()
    except ET.ParseError as exc:
        raise DataError(f"'{p}' is not valid XML ({exc}); re-download the annotation") from None
    polys = []
    for region in root.iter("Region"):
        verts = [(float(v.get("X", "nan")), float(v.get("Y", "nan"))) for v in region.iter("Vertex")]
        polys.append(np.asarray(verts, dtype=np.float64).reshape(-1, 2))
    if not polys and root.tag != "Annotations":
        raise DataError(f"'{p}' has no <Region> elements; expected an Aperio/MoNuSeg annotation file")
    return polys


def rasterise_polygons(polygons: Sequence[np.ndarray], shape: tuple[int, int]) -> tuple[np.ndarray, int]:
    """Instance mask (``uint16``, or ``int32`` above 65535 regions) and the count of skipped
    degenerate polygons."""
    from skimage.draw import polygon

    mask = np.zeros(shape, np.uint16 if len(polygons) < 65535 else np.int32)
    skipped, label = 0, 0
    for poly in polygons:
        if len(poly) < 3 or not np.isfinite(poly).all():
            skipped += 1
            continue
        rr, cc = polygon(poly[:, 1], poly[:, 0], shape=shape)
        if len(rr) == 0:
            skipped += 1
            continue
        label += 1
        mask[rr, cc] = label
    return mask, skipped


def xml_to_instance_mask(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise an Aperio XML file to an ``H×W`` instance mask."""
    return rasterise_polygons(read_aperio_xml(path), shape)[0]


def write_aperio_xml(path: str | Path, polygons: Sequence[np.ndarray], microns_per_pixel: float = 0.25) -> Path:
    """Write polygons (``K×2`` ``(x, y)`` arrays) as a MoNuSeg-style Aperio XML file, atomically."""
    from medattn.io import atomic_write_text

    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             f'<Annotations MicronsPerPixel="{microns_per_pixel:.6f}">',
             '<Annotation Id="1" Name="" ReadOnly="0" Type="4" LineColor="65280" Visible="1">',
             '<Attributes><Attribute Name="Description" Id="0" Value=""/></Attributes>',
             "<Regions>",
             '<RegionAttributeHeaders><AttributeHeader Id="9999" Name="Region" ColumnWidth="-1"/></RegionAttributeHeaders>']
    for i, poly in enumerate(polygons, start=1):
        lines.append(f'<Region Id="{i}" Type="0" Zoom="1" Selected="0" ImageLocation="" Text="" NegativeROA="0">')
        lines.append("<Attributes/>")
        lines.append("<Vertices>")
        lines += [f'<Vertex X="{x:.4f}" Y="{y:.4f}" Z="0"/>' for x, y in np.asarray(poly)]
        lines.append("</Vertices>")
        lines.append("</Region>")
    lines += ["</Regions>", "<Plots/>", "</Annotation>", "</Annotations>"]
    return atomic_write_text(path, "\n".join(lines) + "\n")


def _image_size(p: Path) -> tuple[int, int]:
    try:
        if p.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(p) as t:
                s = t.pages[0].shape
            return int(s[0]), int(s[1])
        from PIL import Image

        with Image.open(p) as im:
            return im.size[1], im.size[0]
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"cannot read the size of image '{p}' ({exc}); re-copy it") from None


def scan_monuseg(root: str | Path) -> Any:
    """Table ``file, xml, height, width, group, split, label`` pairing images with XML by stem.

    Images and annotations may sit in any sub-folders (e.g. ``Tissue_Images/`` and
    ``Annotations/``). Unpaired files are counted in ``table.attrs``.
    """
    import pandas as pd

    r = Path(root)
    if not r.is_dir():
        raise DataError(f"MoNuSeg folder '{r}' not found")
    xmls = {p.stem: p for p in sorted(r.rglob("*.xml")) if not is_junk(p)}
    rows, unmatched = [], 0
    for p in sorted(r.rglob("*")):
        if not p.is_file() or is_junk(p) or p.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        x = xmls.pop(p.stem, None)
        if x is None:
            unmatched += 1
            continue
        h, w = _image_size(p)
        rows.append({"file": p.relative_to(r).as_posix(), "xml": x.relative_to(r).as_posix(),
                     "height": h, "width": w, "group": p.stem, "split": None, "label": ""})
    if not rows:
        raise DataError(f"no image + Aperio XML pairs (same stem) found under '{r}'")
    df = pd.DataFrame(rows)
    df.attrs.update(unmatched_images=unmatched, unmatched_xml=len(xmls), format="monuseg")
    return df


class MoNuSegDataset(TableDataset):
    """MoNuSeg images with instance masks rasterised from their XML: ``(image, mask)``.

    Args:
        root: folder with the images and the XML files.
        table: optional pre-filtered :func:`scan_monuseg` table.
        binary: map every nucleus to 1 (semantic foreground).
        transform, on_bad_file: see :class:`TableDataset`.
    """

    def __init__(self, root: str | Path, table: Any | None = None, *,
                 transform: Callable[..., Any] | None = None, binary: bool = False,
                 on_bad_file: str = "error") -> None:
        self.binary = binary
        super().__init__(root, scan_monuseg(root) if table is None else table, task="segmentation",
                         transform=transform, mask_loader=self._mask, on_bad_file=on_bad_file)  # type: ignore[arg-type]

    def _mask(self, row: Any) -> np.ndarray:
        m = xml_to_instance_mask(self.root / str(row["xml"]), (int(row["height"]), int(row["width"])))
        return (m > 0).astype(np.uint8) if self.binary else m
