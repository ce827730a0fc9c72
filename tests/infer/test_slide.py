"""medattn slide: scale, tissue, heatmap vs truth, QuPath GeoJSON, resume, nuclei across blocks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import shapely
import shapely.geometry
import tifffile
from sklearn.metrics import roc_auc_score

from medattn.errors import ConfigError, OutputError
from medattn.infer.records import read_rows
from medattn.infer.slide import SlideOptions, run_slide
from medattn.infer.slide_io import choose_level, open_slide
from medattn.infer.testslides import assemble_idc_slide, synthetic_slide, write_pyramid
from medattn.infer.tissue import tissue_mask
from tests.conftest import shared_data
from tests.infer.conftest import disc_image


def test_generated_pyramid_reads_as_aperio_with_levels(tmp_path: Path) -> None:
    img = np.full((600, 520, 3), 240, np.uint8)
    img[100:300, 50:400] = (150, 60, 120)
    r = open_slide(write_pyramid(tmp_path / "s.svs", img, 0.5))
    assert (r.backend, r.vendor, r.mpp) == ("openslide", "aperio", 0.5)
    assert r.level_dimensions == [(520, 600), (260, 300), (130, 150)]
    a = r.read_region(70, 120, 0, 20, 20)
    assert np.abs(a.astype(int) - (150, 60, 120)).max() < 12  # JPEG
    assert choose_level(r.level_downsamples, 2.5) == 1 and choose_level(r.level_downsamples, 0.5) == 0


def test_tissue_mask_fills_holes_and_ignores_glass() -> None:
    img = np.full((400, 400, 3), 242, np.uint8)
    img[80:320, 80:320] = (200, 120, 170)
    img[195:198, 195:198] = 242  # a small hole inside tissue (filled)
    img[120:160, 120:160] = 242  # a large one (a lumen: kept)
    m = tissue_mask(img)
    assert m[180:300, 180:300].all() and not m[:60].any() and not m[:, :60].any()
    assert not m[125:155, 125:155].any()
    assert not tissue_mask(np.full((64, 64, 3), 240, np.uint8)).any()  # blank glass: no tissue


def test_tissue_mask_finds_sparse_tissue_and_not_noisy_glass() -> None:
    """A slide whose tissue covers under 1% of it (two scattered patches) is not blank; glass with
    sensor noise and a few coloured specks still is."""
    rng = np.random.default_rng(0)
    glass = np.clip(242 + rng.normal(0, 2, (400, 400, 3)), 0, 255).astype(np.uint8)
    sparse = glass.copy()
    for y, x in ((40, 60), (330, 290)):
        sparse[y:y + 20, x:x + 20] = (200, 120, 170)  # 2 × 400 px = 0.5% of the slide
    m = tissue_mask(sparse)
    assert m[42:58, 62:78].all() and m[332:348, 292:308].all()
    assert m.sum() < 1.5 * 2 * 400
    specks = glass.copy()
    specks[100, 100] = specks[250, 30] = (200, 120, 170)
    assert not tissue_mask(glass).any() and not tissue_mask(specks).any()


def _tiles(out: Path) -> list[dict[str, str]]:
    return read_rows(out / "tiles.csv")


def test_synthetic_slide_outputs_and_geojson(tmp_path: Path, dark_classifier) -> None:
    path, truth = synthetic_slide(tmp_path / "syn.svs", grid=(3, 4), seed=1, mpp=1.0)
    opts = SlideOptions(out=tmp_path / "out", workers=0, batch_size=4, model_mpp=96 / 50)  # 96 level-0 px tiles
    s = run_slide(dark_classifier, path, opts)
    rows = _tiles(opts.out)
    assert s["tile_level0_px"] == pytest.approx(96) and s["level"] == 0 and s["read_px"] == 96
    # tissue tiles are the painted cells (shifted by the 96 px margin, so on the tile grid)
    got = {(int(r["x"]), int(r["y"])) for r in rows}
    assert got == {(t["x"], t["y"]) for t in truth}
    assert len(rows) == s["tiles_predicted"] == s["tiles_tissue"]
    scores = np.array([float(r["score"]) for r in rows])
    assert s["positive_tiles"] == int((scores >= 0.5).sum())
    assert s["max_probability"] == pytest.approx(scores.max(), abs=1e-5)
    grid = np.load(opts.out / "heatmap.npy")
    assert grid.shape == tuple(s["grid"]) and np.isfinite(grid).sum() == len(rows)
    for r in rows:
        assert grid[int(r["row"]), int(r["col"])] == pytest.approx(float(r["score"]), abs=1e-5)
    with tifffile.TiffFile(opts.out / "heatmap.tif") as tf:
        page = tf.pages[0]
        np.testing.assert_allclose(page.asarray(), grid, equal_nan=True)
        assert json.loads(page.description)["um_per_pixel"] == pytest.approx(96.0)
        assert page.tags["XResolution"].value[0] / page.tags["XResolution"].value[1] == pytest.approx(1e4 / 96, rel=1e-3)
    assert (opts.out / "overlay.png").stat().st_size > 1000
    doc = json.loads((opts.out / "slide.geojson").read_text())
    assert doc["type"] == "FeatureCollection"
    dets = [f for f in doc["features"] if f["properties"]["objectType"] == "detection"]
    anns = [f for f in doc["features"] if f["properties"]["objectType"] == "annotation"]
    assert len(dets) == len(rows)
    for f in doc["features"]:
        g = shapely.geometry.shape(f["geometry"])
        assert g.is_valid and not g.is_empty and g.geom_type == "Polygon"
        assert set(f["properties"]["classification"]) == {"name", "color"}
        assert len(f["properties"]["classification"]["color"]) == 3
        assert 0 <= f["properties"]["measurements"]["probability"] <= 1
        minx, miny, maxx, maxy = g.bounds
        assert minx >= 0 and miny >= 0 and maxx <= 4 * 96 + 192 and maxy <= 3 * 96 + 192
    # annotations = union of the positive tiles (same area), named by the positive class
    pos_area = sum(96 * 96 for r in rows if float(r["score"]) >= 0.5)
    assert sum(shapely.geometry.shape(f["geometry"]).area for f in anns) == pytest.approx(pos_area)
    assert all(f["properties"]["classification"]["name"] == "tumour" for f in anns)


def test_blank_slide_lists_only_the_outputs_it_wrote(tmp_path: Path, dark_classifier) -> None:
    path = write_pyramid(tmp_path / "glass.svs", np.full((512, 512, 3), 242, np.uint8), mpp=1.0, levels=1)
    s = run_slide(dark_classifier, path, SlideOptions(out=tmp_path / "out", workers=0, model_mpp=96 / 50))
    assert s["tiles_tissue"] == 0 and any("no tissue" in w for w in s["warnings"])
    assert "tiles.csv" not in s["outputs"] and "summary.json" in s["outputs"]
    assert all((tmp_path / "out" / f).is_file() for f in s["outputs"])


def test_slide_scale_must_be_known(tmp_path: Path, dark_classifier) -> None:
    import tifffile as tf

    img = np.full((512, 512, 3), 200, np.uint8)
    plain = tmp_path / "plain.tif"
    tf.imwrite(plain, img, tile=(256, 256), photometric="rgb")
    with pytest.raises(ConfigError, match="--mpp"):
        run_slide(dark_classifier, plain, SlideOptions(out=tmp_path / "a", workers=0))
    dark_classifier.meta.pop("mpp")
    path, _ = synthetic_slide(tmp_path / "s.svs", grid=(1, 2))
    with pytest.raises(ConfigError, match="--model-mpp"):
        run_slide(dark_classifier, path, SlideOptions(out=tmp_path / "b", workers=0))


def test_resume_after_interruption_has_no_duplicates(tmp_path: Path, dark_classifier) -> None:
    path, truth = synthetic_slide(tmp_path / "syn.svs", grid=(3, 4), seed=2, mpp=1.0, fill=1.0)
    full = SlideOptions(out=tmp_path / "full", workers=0, batch_size=3, model_mpp=96 / 50)
    run_slide(dark_classifier, path, full)

    class Killed(Exception):
        pass

    def kill_after_two(done: int, total: int) -> None:
        if done >= 6:
            raise Killed

    part = SlideOptions(out=tmp_path / "part", workers=0, batch_size=3, model_mpp=96 / 50, progress=kill_after_two)
    with pytest.raises(Killed):
        run_slide(dark_classifier, path, part)
    assert len(_tiles(part.out)) == 6
    with open(part.out / "tiles.csv", "a") as fh:  # a line cut by the kill
        fh.write("9_9,9,9,1")
    with pytest.raises(OutputError, match="--resume"):
        run_slide(dark_classifier, path, SlideOptions(out=part.out, workers=0, model_mpp=96 / 50))
    s = run_slide(dark_classifier, path, SlideOptions(out=part.out, workers=0, batch_size=3, model_mpp=96 / 50,
                                                      resume=True))
    rows = _tiles(part.out)
    assert s["tiles_new_this_run"] == len(truth) - 6
    assert sorted(r["tile"] for r in rows) == sorted({r["tile"] for r in rows}) == sorted(
        r["tile"] for r in _tiles(full.out))
    want = {r["tile"]: float(r["score"]) for r in _tiles(full.out)}
    assert all(float(r["score"]) == pytest.approx(want[r["tile"]], abs=1e-6) for r in rows)


def test_idc_slide_heatmap_auroc_equals_patch_auroc(tmp_path: Path, dark_classifier) -> None:
    root = shared_data("breast_idc")
    path, truth = assemble_idc_slide(root, "10273", tmp_path / "idc.svs", mpp=4.0)
    opts = SlideOptions(out=tmp_path / "out", workers=1, batch_size=32, min_tissue=0.2)
    s = run_slide(dark_classifier, path, opts)
    assert s["tile_level0_px"] == pytest.approx(50) and s["level"] == 0
    grid = np.load(opts.out / "heatmap.npy")
    full = [t for t in truth if (t["w"], t["h"]) == (50, 50)]
    cover = [t for t in full if np.isfinite(grid[t["y"] // 50, t["x"] // 50])]
    assert len(cover) >= 0.85 * len(full)  # very pale (fatty) patches are not tissue to Otsu
    y = np.array([t["label"] for t in cover])
    slide_auc = roc_auc_score(y, [grid[t["y"] // 50, t["x"] // 50] for t in cover])
    # the same scorer on the original patch files
    files = {p.name: p for p in root.rglob("10273_idx5_*.png")}
    patch_p = [float(dark_classifier.infer([files[t["file"]]])[0]["probabilities"]["tumour"]) for t in cover]
    patch_auc = roc_auc_score(y, patch_p)
    assert patch_auc > 0.6  # darker patches are the tumour ones
    assert abs(slide_auc - patch_auc) < 0.02


def test_nuclei_on_block_borders_are_kept_once(tmp_path: Path, dark_segmenter) -> None:
    rng = np.random.default_rng(0)
    centres = [(int(y), int(x)) for y, x in rng.uniform(20, 300, (30, 2))]
    centres += [(128, 60), (60, 128), (128, 128), (256, 200), (200, 256)]  # on the 128-px block borders
    keep = []
    for c in centres:  # no touching discs
        if all((c[0] - d[0]) ** 2 + (c[1] - d[1]) ** 2 > 18 ** 2 for d in keep):
            keep.append(c)
    img = disc_image(320, 320, keep)
    path = write_pyramid(tmp_path / "nuc.svs", img, 0.5, levels=2, quality=95)
    region = "0,0,320,320"
    res = {}
    for block in (64, 512):
        out = tmp_path / f"b{block}"
        s = run_slide(dark_segmenter, path, SlideOptions(out=out, workers=0, block=block,
                                                         region=tuple(map(int, region.split(",")))))
        objs = read_rows(out / "nuclei.csv")
        res[block] = np.array(sorted((float(o["centroid_y"]), float(o["centroid_x"])) for o in objs))
        assert s["nuclei"] == len(objs)
        doc = json.loads((out / "nuclei.geojson").read_text())
        assert len(doc["features"]) == len(objs)
        for f in doc["features"]:
            g = shapely.geometry.shape(f["geometry"])
            assert g.is_valid and f["properties"]["objectType"] == "detection"
            assert g.area == pytest.approx(np.pi * 49, rel=0.25)
            m = f["properties"]["measurements"]  # slide at 0.5 µm/px
            assert m["Nucleus: Area µm^2"] == pytest.approx(np.pi * 49 * 0.25, rel=0.25)
            assert m["Nucleus: Perimeter µm"] == pytest.approx(2 * np.pi * 7 * 0.5, rel=0.25)
            assert 0 <= m["Nucleus: Eccentricity"] < 0.5 and m["Nucleus: Intensity mean"] < 80
    assert len(res[64]) == len(res[512]) == len(keep)
    np.testing.assert_allclose(res[64], res[512], atol=0.5)
    truth = np.array(sorted(keep), float) + 0.5
    np.testing.assert_allclose(res[512], truth, atol=1.0)


def test_nuclei_resume_skips_finished_blocks(tmp_path: Path, dark_segmenter) -> None:
    img = disc_image(256, 256, [(40, 40), (100, 180), (200, 90), (128, 128)])
    path = write_pyramid(tmp_path / "n.svs", img, 0.5, levels=2, quality=95)

    def stop(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    kw = {"workers": 0, "block": 64, "region": (0, 0, 256, 256)}
    with pytest.raises(KeyboardInterrupt):
        run_slide(dark_segmenter, path, SlideOptions(out=tmp_path / "o", progress=stop, **kw))
    s = run_slide(dark_segmenter, path, SlideOptions(out=tmp_path / "o", resume=True, **kw))
    assert s["blocks_new_this_run"] == s["blocks"] - 2
    assert s["nuclei"] == 4 == len(read_rows(tmp_path / "o" / "nuclei.csv"))
