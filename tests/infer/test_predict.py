"""medattn predict: inputs, incremental CSV + resume, bad files, large inputs, instances."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import shapely.geometry
from PIL import Image

from medattn.errors import DataError, OutputError
from medattn.infer.inputs import output_names, resolve_inputs
from medattn.infer.predict import PredictOptions, run_predict
from medattn.infer.records import read_rows
from tests.infer.conftest import disc_image


def _img(path: Path, h: int, w: int, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)
    return path


def test_inputs_from_folders_globs_and_manifests(tmp_path: Path) -> None:
    a = _img(tmp_path / "d" / "a.png", 8, 8, 10)
    b = _img(tmp_path / "d" / "sub" / "b.png", 8, 8, 10)
    c = _img(tmp_path / "e" / "a.png", 8, 8, 10)
    (tmp_path / "d" / "notes.txt").write_text("x")
    (tmp_path / "m.csv").write_text("path,label\ne/a.png,1\nmissing.png,0\n")
    got = resolve_inputs([str(tmp_path / "d"), str(tmp_path / "e" / "*.png"), str(tmp_path / "m.csv")])
    assert got == [a, b, c, tmp_path / "missing.png"]  # duplicates once, missing kept to be reported
    assert output_names([a, c]) == [f"{a.with_suffix('').as_posix().lstrip('/').replace('/', '__')}",
                                    f"{c.with_suffix('').as_posix().lstrip('/').replace('/', '__')}"]
    with pytest.raises(DataError, match="not found"):
        resolve_inputs([str(tmp_path / "nope")])


def test_classification_csv_resume_bad_files_and_tiling(tmp_path: Path, dark_classifier) -> None:
    src = tmp_path / "in"
    dark = _img(src / "dark.png", 50, 50, 60)
    light = _img(src / "light.png", 40, 60, 230)
    big = np.full((120, 260, 3), 230, np.uint8)
    big[50:100, 150:200] = 40  # one dark tile in a light field
    Image.fromarray(big).save(src / "big.png")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    opts = PredictOptions(out=tmp_path / "out", batch_size=2)
    res = run_predict(dark_classifier, [str(src)], opts)
    rows = {Path(r["path"]).name: r for r in read_rows(opts.out / "predictions.csv")}
    assert set(rows) == {"dark.png", "light.png", "big.png"} and res["n_bad"] == 1
    assert [Path(r["path"]).name for r in read_rows(opts.out / "bad_files.csv")] == ["broken.png"]
    direct = dark_classifier.infer([dark, light])
    for name, d in zip(("dark.png", "light.png"), direct, strict=True):
        assert float(rows[name]["prob_tumour"]) == pytest.approx(d["probabilities"]["tumour"], abs=1e-5)
        assert rows[name]["predicted_label"] == d["label"] and float(rows[name]["threshold"]) == 0.5
    assert rows["dark.png"]["handling"] == "as-is" and rows["light.png"]["handling"] == "resized"
    # 260 > 2 × 50: tiled at its own scale, the dark tile found, not squashed away
    b = rows["big.png"]
    assert b["handling"] == "tiled" and int(b["tiles"]) == 3 * 6
    assert float(b["prob_tumour"]) == pytest.approx(float(b["tile_max"])) and float(b["tile_max"]) > 0.9
    assert float(b["tile_mean"]) < 0.3 and b["predicted_label"] == "tumour"
    squashed = dark_classifier.infer([src / "big.png"], tile=False)[0]["probabilities"]["tumour"]
    assert squashed < 0.5  # what resizing would have said
    assert (opts.out / b["heatmap"]).is_file()

    # a rerun refuses to mix; --resume predicts only what is new, each item once
    with pytest.raises(OutputError, match="--resume"):
        run_predict(dark_classifier, [str(src)], PredictOptions(out=opts.out))
    _img(src / "new.png", 50, 50, 100)
    with open(opts.out / "predictions.csv", "a") as fh:
        fh.write("/half/written.png,5")  # a line cut by a crash
    res = run_predict(dark_classifier, [str(src)], PredictOptions(out=opts.out, resume=True))
    names = [Path(r["path"]).name for r in read_rows(opts.out / "predictions.csv")]
    assert sorted(names) == ["big.png", "dark.png", "light.png", "new.png"] and res["n_new"] == 1

    with pytest.raises(DataError, match="broken.png"):
        run_predict(dark_classifier, [str(src / "broken.png")], PredictOptions(out=tmp_path / "o2", on_bad_file="error"))


def test_columns_appear_when_filled_and_never_stay_empty(tmp_path: Path, dark_classifier) -> None:
    """A column first filled by a later input widens the header (no JSON ``extra`` column); columns
    no input filled are dropped when the run ends, and a resumed run widens the header again."""
    src = tmp_path / "in"
    _img(src / "a_small.png", 50, 50, 60)
    big = np.full((120, 260, 3), 230, np.uint8)
    Image.fromarray(big).save(src / "b_big.png")
    opts = PredictOptions(out=tmp_path / "out", batch_size=1)
    run_predict(dark_classifier, [str(src / "a_small.png")], opts)
    with open(opts.out / "predictions.csv", encoding="utf-8") as fh:
        header = next(csv.reader(fh))
    rows = read_rows(opts.out / "predictions.csv")
    assert "extra" not in header and "tiles" not in header
    assert all(any(r[c] for r in rows) for c in header)
    run_predict(dark_classifier, [str(src)], PredictOptions(out=opts.out, resume=True, batch_size=1))
    rows = {Path(r["path"]).name: r for r in read_rows(opts.out / "predictions.csv")}
    assert rows["b_big.png"]["handling"] == "tiled" and int(rows["b_big.png"]["tiles"]) == 3 * 6
    assert rows["a_small.png"]["tiles"] == "" and rows["a_small.png"]["predicted_label"]


def test_bundle_rule_refuses_large_inputs_with_the_fix(tmp_path: Path, dark_classifier) -> None:
    dark_classifier.meta["large_input"] = {"policy": "refuse", "factor": 3}
    src = tmp_path / "in"
    _img(src / "ok.png", 140, 140, 90)  # 2.8× : accepted (resized, and said so)
    _img(src / "huge.png", 200, 200, 90)
    res = run_predict(dark_classifier, [str(src)], PredictOptions(out=tmp_path / "out"))
    assert res["n_done"] == 1 and res["n_bad"] == 1
    assert read_rows(tmp_path / "out" / "predictions.csv")[0]["handling"] == "resized"
    why = read_rows(tmp_path / "out" / "bad_files.csv")[0]["error"]
    assert "3× the model's 50×50" in why and "--tile" in why
    res = run_predict(dark_classifier, [str(src / "huge.png")], PredictOptions(out=tmp_path / "o2", tile=True))
    assert res["n_tiled"] == 1


def test_segmentation_instances_objects_and_geojson(tmp_path: Path, dark_segmenter) -> None:
    centres = [(30, 30), (30, 90), (100, 40), (150, 200), (60, 250), (170, 120)]
    img = disc_image(190, 300, centres, r=9)
    Image.fromarray(img).save(tmp_path / "field.png")
    res = run_predict(dark_segmenter, [str(tmp_path / "field.png")], PredictOptions(out=tmp_path / "out"))
    row = read_rows(tmp_path / "out" / "predictions.csv")[0]
    assert res["n_done"] == 1 and int(row["objects"]) == len(centres)
    lab = np.asarray(Image.open(tmp_path / "out" / row["mask"]))
    assert lab.shape == (190, 300) and lab.dtype == np.uint16 and lab.max() == len(centres)
    with open(tmp_path / "out" / row["objects_csv"]) as fh:
        objs = list(csv.DictReader(fh))
    areas = np.bincount(lab.ravel())[1:]
    for o in objs:
        i = int(o["id"])
        assert float(o["area"]) == areas[i - 1]
        ys, xs = np.nonzero(lab == i)
        assert float(o["centroid_x"]) == pytest.approx(xs.mean() + 0.5, abs=1e-3)
        assert int(float(o["bbox_x0"])) == xs.min() and int(float(o["bbox_y1"])) == ys.max() + 1
        assert float(o["mean_probability"]) > 0.9
    got = sorted((round(float(o["centroid_y"]) - 0.5), round(float(o["centroid_x"]) - 0.5)) for o in objs)
    assert got == sorted(centres)
    doc = json.loads((tmp_path / "out" / row["geojson"]).read_text())
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == len(centres)
    for f in doc["features"]:
        g = shapely.geometry.shape(f["geometry"])
        assert g.is_valid and f["properties"]["objectType"] == "detection"
        assert g.area == pytest.approx(areas[f["properties"]["id_in_mask"] - 1], rel=0.15)
        m = f["properties"]["measurements"]  # QuPath cell measurements at the bundle's 0.5 µm/px
        assert m["Nucleus: Area µm^2"] == pytest.approx(areas[f["properties"]["id_in_mask"] - 1] * 0.25)
        assert m["Nucleus: Perimeter µm"] == pytest.approx(2 * np.pi * 9 * 0.5, rel=0.1)
        assert m["Nucleus: Eccentricity"] < 0.3
        assert m["Nucleus: Intensity mean"] == pytest.approx(0.2125 * 70 + 0.7154 * 30 + 0.0721 * 110, abs=0.5)
        assert 0.9 < m["probability"] < 1 and m["probability"] != round(m["probability"], 2)


def test_readable_overlays_for_tiled_and_segmentation_predictions(tmp_path: Path, dark_classifier,
                                                                  dark_segmenter) -> None:
    """A person reads the pictures: the tiled heatmap lies over the image (hot where the dark tile
    is) with a colour bar and a labelled threshold; segmentation gets contours over the image."""
    big = np.full((120, 260, 3), 230, np.uint8)
    big[50:100, 150:200] = 40
    Image.fromarray(big).save(tmp_path / "big.png")
    run_predict(dark_classifier, [str(tmp_path / "big.png")], PredictOptions(out=tmp_path / "c"))
    row = read_rows(tmp_path / "c" / "predictions.csv")[0]
    hm = np.asarray(Image.open(tmp_path / "c" / row["heatmap"]).convert("RGB")).astype(int)
    k = 400 / 260  # small images are enlarged to 400 px on their longer side
    assert hm.shape[1] > 400 and hm.shape[0] >= int(120 * k)  # the image plus a colour bar beside it
    top = 22
    dark = hm[top + int(75 * k), int(175 * k)]  # the dark tile: high probability, bright inferno
    light = hm[top + int(20 * k), int(30 * k)]  # a light tile: low probability, dark purple tint
    assert dark.sum() > light.sum() + 100
    assert (hm[top:, int(400 + 20):int(400 + 38)].std() > 20)  # the colour bar is drawn
    centres = [(30, 30), (30, 90), (100, 40)]
    Image.fromarray(disc_image(130, 130, centres, r=9)).save(tmp_path / "field.png")
    run_predict(dark_segmenter, [str(tmp_path / "field.png")], PredictOptions(out=tmp_path / "s"))
    srow = read_rows(tmp_path / "s" / "predictions.csv")[0]
    ov = np.asarray(Image.open(tmp_path / "s" / srow["overlay"]).convert("RGB"))
    assert ov.shape[1] >= 400 and ov.shape[0] > 400  # enlarged, title bar on top
    assert "predicted_label" not in srow and srow["objects"] == "3"


def test_on_bad_file_error_stops_without_leaving_an_empty_list(tmp_path: Path, dark_classifier) -> None:
    """An unreadable file with on_bad_file=error stops with its name and leaves no empty bad_files.csv."""
    src = tmp_path / "in"
    src.mkdir()
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match="broken.png"):
        run_predict(dark_classifier, [str(src)], PredictOptions(out=tmp_path / "out", on_bad_file="error"))
    assert not (tmp_path / "out" / "bad_files.csv").exists()
