"""QuPath-ready GeoJSON: tiles and nuclei as ``detection`` objects, regions as ``annotation``.

Layout of QuPath's GeoJSON import: a ``FeatureCollection`` whose features carry
``properties.objectType`` (``"annotation"`` or ``"detection"``), ``properties.classification``
(``{"name", "color": [r, g, b]}``) and ``properties.measurements`` (``{name: number}``);
coordinates are level-0 pixels, y downwards. Geometry goes through shapely, so every polygon
written is valid (``make_valid``) and closed. Coordinates are rounded to 0.01 px; measurements
(probabilities, areas) keep full precision.

Nuclei (:func:`nucleus_feature`) carry QuPath's cell-detection measurement names: ``Nucleus: Area
µm^2``, ``Nucleus: Perimeter µm`` (``px^2`` / ``px`` when the scale is unknown), ``Nucleus:
Eccentricity`` and ``Nucleus: Intensity mean`` (grey, 0–255), plus ``probability``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["feature", "feature_collection", "write_geojson", "instance_polygons", "tile_polygon",
           "region_polygons", "nucleus_feature", "nucleus_measurements", "CLASS_COLORS"]

CLASS_COLORS: dict[str, list[int]] = {
    "tumour": [200, 0, 0], "tumor": [200, 0, 0], "positive": [200, 0, 0], "nucleus": [0, 120, 255],
    "normal": [0, 160, 0], "negative": [0, 160, 0], "tissue": [120, 120, 120],
}
_PALETTE = [[230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48], [145, 30, 180], [70, 240, 240]]


def _color(name: str) -> list[int]:
    key = name.lower()
    if key in CLASS_COLORS:
        return CLASS_COLORS[key]
    return _PALETTE[sum(map(ord, key)) % len(_PALETTE)]


def feature(geometry: Any, object_type: str, name: str, measurements: dict[str, float] | None = None,
            **extra: Any) -> dict[str, Any]:
    """One QuPath feature from a shapely geometry (or a GeoJSON geometry mapping)."""
    import shapely.geometry

    if object_type not in ("annotation", "detection"):
        raise ValueError(f"objectType must be 'annotation' or 'detection', got {object_type!r}")
    geom = shapely.geometry.mapping(geometry) if hasattr(geometry, "geom_type") else geometry
    props: dict[str, Any] = {"objectType": object_type, "classification": {"name": name, "color": _color(name)}}
    if measurements:
        props["measurements"] = {k: float(v) for k, v in measurements.items() if v is not None and v == v}
    props.update(extra)
    return {"type": "Feature", "id": str(uuid.uuid4()), "geometry": geom, "properties": props}


def nucleus_measurements(row: dict[str, Any]) -> dict[str, float]:
    """QuPath-named measurements of one row of :func:`medattn.infer.instances.object_table`."""
    def val(k: str) -> float | None:
        v = row.get(k)
        return float(v) if isinstance(v, (int, float)) and v == v else None

    um = val("area_um2") is not None
    out = {
        "probability": val("mean_probability"),
        "Nucleus: Area µm^2" if um else "Nucleus: Area px^2": val("area_um2") if um else val("area"),
        "Nucleus: Perimeter µm" if um else "Nucleus: Perimeter px": val("perimeter_um") if um else val("perimeter"),
        "Nucleus: Eccentricity": val("eccentricity"),
        "Nucleus: Intensity mean": val("mean_intensity"),
    }
    return {k: v for k, v in out.items() if v is not None}


def nucleus_feature(geometry: Any, row: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A QuPath detection of one nucleus: its outline, class (``Nucleus`` unless the head has
    semantic classes) and :func:`nucleus_measurements`."""
    return feature(geometry, "detection", row.get("class") or "Nucleus", nucleus_measurements(row), **extra)


def feature_collection(features: Iterable[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


def _round_coords(o: Any) -> Any:
    if isinstance(o, float):
        return round(o, 2)
    if isinstance(o, (list, tuple)):
        return [_round_coords(v) for v in o]
    return o


def write_geojson(path: str | Path, features: Iterable[dict[str, Any]]) -> Path:
    """Write a FeatureCollection atomically (compact; coordinates rounded to 0.01 px, properties
    such as probabilities at full precision)."""
    from medattn.io import atomic_write_text, to_jsonable

    doc = to_jsonable(feature_collection(features))
    for f in doc["features"]:
        geom = f.get("geometry") or {}
        if "coordinates" in geom:
            geom["coordinates"] = _round_coords(geom["coordinates"])
    return atomic_write_text(path, json.dumps(doc, separators=(",", ":")) + "\n")


def _valid(geom: Any) -> Any:
    import shapely

    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    if geom.geom_type == "GeometryCollection":
        polys = [g for g in geom.geoms if g.geom_type in ("Polygon", "MultiPolygon")]
        geom = shapely.unary_union(polys) if polys else None
    if geom is not None and geom.geom_type == "MultiPolygon":
        geom = max(geom.geoms, key=lambda g: g.area)
    return geom


def instance_polygons(labels: np.ndarray, *, offset: tuple[float, float] = (0.0, 0.0),
                      scale: float = 1.0, simplify: float = 0.0) -> dict[int, Any]:
    """``{instance id: shapely Polygon}`` outlining each instance of a label image.

    The outline runs along pixel edges' midpoints (marching squares at level 0.5 on the padded
    mask), then is scaled by ``scale`` and shifted by ``offset`` ``(x, y)`` to level-0 pixels.
    """
    from scipy import ndimage as ndi
    from shapely.affinity import affine_transform
    from shapely.geometry import Polygon
    from skimage.measure import find_contours

    out: dict[int, Any] = {}
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        crop = np.pad(labels[sl] == i, 1).astype(np.float32)
        contours = find_contours(crop, 0.5)
        if not contours:
            continue
        c = max(contours, key=len)
        if len(c) < 4:
            continue
        # contour (row, col) in the padded crop → pixel coordinates, +0.5 to the pixel-corner grid
        xs = c[:, 1] - 1 + sl[1].start + 0.5
        ys = c[:, 0] - 1 + sl[0].start + 0.5
        poly = _valid(Polygon(np.column_stack([xs, ys])))
        if poly is None or poly.is_empty:
            continue
        poly = affine_transform(poly, [scale, 0, 0, scale, offset[0], offset[1]])
        if simplify > 0:
            poly = _valid(poly.simplify(simplify, preserve_topology=True))
        if poly is not None and not poly.is_empty:
            out[i] = poly
    return out


def tile_polygon(x: float, y: float, w: float, h: float) -> Any:
    """Axis-aligned box ``[x, x + w] × [y, y + h]`` in level-0 pixels."""
    from shapely.geometry import box

    return box(x, y, x + w, y + h)


def region_polygons(boxes: Iterable[tuple[float, float, float, float]]) -> list[Any]:
    """Union of boxes ``(x, y, w, h)`` as separate valid polygons (holes kept)."""
    import shapely

    geoms = [tile_polygon(*b) for b in boxes]
    if not geoms:
        return []
    u = shapely.make_valid(shapely.unary_union(geoms))
    parts = list(u.geoms) if hasattr(u, "geoms") else [u]
    return [p for p in parts if p.geom_type == "Polygon" and not p.is_empty]
