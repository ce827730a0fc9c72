"""GeoJSON keeps probabilities at full precision; nuclei carry QuPath's cell measurements."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medattn.infer.geojson import feature, nucleus_measurements, tile_polygon, write_geojson
from medattn.infer.instances import OBJECT_COLUMNS, grey_image, object_table


def test_probabilities_keep_full_precision_and_coordinates_are_rounded(tmp_path: Path) -> None:
    p = 0.123456789012
    f = feature(tile_polygon(10.123456, 20.0, 96.0, 96.0), "detection", "tumour",
                {"probability": p, "area_mm2": 1.23456789e-4})
    doc = json.loads(write_geojson(tmp_path / "a.geojson", [f]).read_text())
    m = doc["features"][0]["properties"]["measurements"]
    assert m["probability"] == p and m["area_mm2"] == 1.23456789e-4
    ring = doc["features"][0]["geometry"]["coordinates"][0]
    assert sorted({x for x, _ in ring}) == [10.12, 106.12]  # coordinates: 0.01 px


def _shapes() -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:80, :120]
    lab = np.zeros((80, 120), np.int32)
    lab[(yy - 30) ** 2 + (xx - 30) ** 2 <= 15 ** 2] = 1  # disc r = 15
    lab[((yy - 40) / 8.0) ** 2 + ((xx - 85) / 24.0) ** 2 <= 1] = 2  # ellipse a = 24, b = 8
    img = np.full((80, 120, 3), 230, np.uint8)
    img[lab == 1] = (80, 80, 80)
    img[lab == 2] = (150, 150, 150)
    return lab, img


def test_object_measurements_in_micrometres() -> None:
    lab, img = _shapes()
    rows = {r["id"]: r for r in object_table(lab, mpp=0.25, image=img, scale=2.0)}
    assert set(rows[1]) == set(OBJECT_COLUMNS)
    disc, ell = rows[1], rows[2]
    assert disc["area"] == (lab == 1).sum() * 4  # level-0 px (scale 2)
    assert disc["area_um2"] == pytest.approx(disc["area"] * 0.0625)
    assert disc["area_um2"] == pytest.approx(np.pi * (15 * 2 * 0.25) ** 2, rel=0.05)
    assert disc["perimeter_um"] == pytest.approx(2 * np.pi * 15 * 2 * 0.25, rel=0.08)
    assert disc["eccentricity"] < 0.2
    assert ell["eccentricity"] == pytest.approx(np.sqrt(1 - (8 / 24) ** 2), abs=0.03)
    assert disc["mean_intensity"] == pytest.approx(80, abs=0.5) and ell["mean_intensity"] == pytest.approx(150, abs=0.5)


def test_unknown_scale_leaves_micrometres_empty_and_names_pixels() -> None:
    lab, _ = _shapes()
    row = object_table(lab)[0]
    assert row["area_um2"] == "" and row["perimeter_um"] == "" and row["mean_intensity"] == ""
    m = nucleus_measurements({**row, "mean_probability": 0.87654321})
    assert m["Nucleus: Area px^2"] == row["area"] and m["Nucleus: Perimeter px"] == row["perimeter"]
    assert "Nucleus: Area µm^2" not in m and "Nucleus: Intensity mean" not in m
    assert m["probability"] == 0.87654321


def test_grey_of_a_normalised_tensor_matches_the_image() -> None:
    import torch

    _, img = _shapes()
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    x = (torch.from_numpy(img).permute(2, 0, 1).float() / 255 - torch.tensor(mean)[:, None, None]) / torch.tensor(
        std)[:, None, None]
    np.testing.assert_allclose(grey_image(x, mean, std), grey_image(img), atol=1e-3)
