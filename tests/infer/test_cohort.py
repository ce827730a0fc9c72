"""Cohorts of slides: one atomic folder per slide, cohort.csv, failures that do not stop the
others, resume of a killed slide, stable shards + merge, and the Dask engine (same rows)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from medattn.cli import main
from medattn.errors import ConfigError, DataError
from medattn.infer.cohort import (
    COLUMNS,
    CohortOptions,
    merge_shards,
    parse_shard,
    read_table,
    run_cohort,
    shard_of,
    slide_items,
)
from medattn.infer.records import read_rows
from medattn.infer.testslides import assemble_idc_slide, synthetic_slide
from tests.conftest import SHARED_DATA
from tests.infer.conftest import save_tiny_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_bundle(tmp_path_factory.mktemp("bundle") / "b", gain=2000.0)


@pytest.fixture(scope="module")
def pred(bundle: Path):  # noqa: ANN201
    from medattn.bundle import load_bundle

    return load_bundle(bundle)


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five small synthetic slides (64 level-0 px tiles for the 2 µm/px bundle)."""
    root = tmp_path_factory.mktemp("slides")
    for i in range(5):
        synthetic_slide(root / f"slide{i}.svs", grid=(3, 4), seed=i, mpp=1.0)
    return root


def _corrupt_tiles(src: Path, dst: Path, pages: tuple[int, ...] = (0, 1), tile: int = 1) -> Path:
    """A copy of ``src`` whose JPEG tile ``tile`` is zeroed on each of ``pages``."""
    data = bytearray(src.read_bytes())
    with tifffile.TiffFile(src) as tf:
        for p in pages:
            o, n = tf.pages[p].dataoffsets[tile], tf.pages[p].databytecounts[tile]
            data[o:o + n] = bytes(n)
    dst.write_bytes(bytes(data))
    return dst


def _without_seconds(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    j = lines[0].split(",").index("seconds")
    return [",".join(c for k, c in enumerate(next(csv.reader([line]))) if k != j) for line in lines]


def test_truncated_slide_beside_a_good_one(tmp_path: Path, bundle: Path, slides: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 22.1: one line naming the broken file, the good slide processed, exit 2 at the end."""
    data = (slides / "slide0.svs").read_bytes()
    trunc = tmp_path / "truncated.svs"
    trunc.write_bytes(data[: len(data) // 3])
    out = tmp_path / "D"
    rc = main(["slide", str(bundle), str(trunc), str(slides / "slide1.svs"), "--out", str(out), "--workers", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and "object at 0x" not in err
    lines = [x for x in err.splitlines() if "truncated.svs" in x]
    assert len(lines) == 1 and lines[0].startswith("error: truncated (") and "damaged or truncated" in lines[0]
    assert "failed_slides.csv" in err.splitlines()[-1]
    assert (out / "slide1" / "summary.json").is_file() and not (out / "truncated").exists()
    rows = {r["slide"]: r for r in read_table(out / "cohort.csv")}
    assert [rows[s]["status"] for s in ("slide1", "truncated")] == ["ok", "failed"]
    assert int(rows["slide1"]["tiles"]) > 0 and rows["truncated"]["tiles"] == ""
    failed = read_table(out / "failed_slides.csv")
    assert [f["slide"] for f in failed] == ["truncated"] and "truncated" in failed[0]["path"]


def test_corrupt_tiles_are_marked_and_the_slide_finishes(tmp_path: Path, pred, slides: Path) -> None:
    wide, _ = synthetic_slide(tmp_path / "wide.svs", grid=(4, 8), seed=7, mpp=1.0)  # 960×576 px
    bad = _corrupt_tiles(wide, tmp_path / "bad.svs")  # the right half of levels 0 and 1
    res = run_cohort(pred, slide_items([str(bad), str(wide)]),
                     CohortOptions(out=tmp_path / "D", slide={"workers": 2}))
    assert [r["status"] for r in res["rows"]] == ["ok", "ok"]
    tiles = read_rows(tmp_path / "D" / "bad" / "tiles.csv")
    marked = [t for t in tiles if t["status"] == "read_error"]
    assert marked and all(t["score"] == "" for t in marked) and all(t["status"] in ("ok", "read_error") for t in tiles)
    good = {t["tile"]: t["score"] for t in read_rows(tmp_path / "D" / "wide" / "tiles.csv")}
    ok = [t for t in tiles if t["status"] == "ok"]
    assert len(ok) + len(marked) == len(good) and all(int(t["x"]) >= 448 for t in marked)
    assert all(t["score"] == good[t["tile"]] for t in ok if int(t["x"]) + 64 <= 512)  # away from the damage
    grid = np.load(tmp_path / "D" / "bad" / "heatmap.npy")
    assert all(np.isnan(grid[int(t["row"]), int(t["col"])]) for t in marked)
    summary = json.loads((tmp_path / "D" / "bad" / "summary.json").read_text())
    assert summary["tiles_read_error"] == len(marked) and summary["tiles_predicted"] == len(ok)
    row = next(r for r in read_table(tmp_path / "D" / "cohort.csv") if r["slide"] == "bad")
    (warning,) = json.loads(row["warnings"])
    assert f"{len(marked)} tiles could not be decoded" in warning and "read_error" in warning
    assert int(row["tiles"]) == len(ok)


def test_killed_slide_resumes_and_finished_slides_are_skipped(tmp_path: Path, pred, slides: Path) -> None:
    items = slide_items([str(slides / "slide3.svs"), str(slides / "slide4.svs")])
    out = tmp_path / "D"

    class Killed(BaseException):
        pass

    def progress(item):  # noqa: ANN001, ANN202
        def kill(done: int, total: int) -> None:
            if item.slide == "slide4" and done >= 8:
                raise Killed
        return kill

    with pytest.raises(Killed):
        run_cohort(pred, items, CohortOptions(out=out, slide={"workers": 0, "batch_size": 4}, progress=progress))
    assert (out / "slide3" / "summary.json").is_file() and not (out / "slide4").exists()
    assert len(read_rows(out / ".partial" / "slide4" / "tiles.csv")) == 8
    res = run_cohort(pred, items, CohortOptions(out=out, slide={"workers": 0, "batch_size": 4}))
    assert [r["status"] for r in res["rows"]] == ["skipped", "ok"]
    summary = json.loads((out / "slide4" / "summary.json").read_text())
    assert summary["tiles_new_this_run"] == summary["tiles_predicted"] - 8
    assert not (out / ".partial").exists()
    fresh = run_cohort(pred, items[1:], CohortOptions(out=tmp_path / "fresh", slide={"workers": 0}))["rows"][0]
    resumed = {t["tile"]: t["score"] for t in read_rows(out / "slide4" / "tiles.csv")}
    assert resumed == {t["tile"]: t["score"] for t in read_rows(tmp_path / "fresh" / "slide4" / "tiles.csv")}
    assert fresh["tiles"] == res["rows"][1]["tiles"] and fresh["max"] == res["rows"][1]["max"]
    # a rerun skips both; other settings into the same folder are refused before anything runs
    assert [r["status"] for r in run_cohort(pred, items, CohortOptions(out=out, slide={"workers": 0}))["rows"]] == \
        ["skipped", "skipped"]
    with pytest.raises(ConfigError, match="min_tissue 0.5 → 0.2"):
        run_cohort(pred, items, CohortOptions(out=out, slide={"workers": 0, "min_tissue": 0.2}))


def test_shards_are_stable_and_cover_the_manifest(tmp_path: Path) -> None:
    ids = [f"patient-{i:03d}" for i in range(200)]
    parts = [[s for s in ids if shard_of(s, 4) == k] for k in (1, 2, 3, 4)]
    assert sorted(sum(parts, [])) == sorted(ids) and all(20 < len(p) < 80 for p in parts)
    assert [shard_of(s, 4) for s in reversed(ids)] == [shard_of(s, 4) for s in ids][::-1]
    assert parse_shard("2/4") == (2, 4) and parse_shard(None) is None
    for bad in ("0/2", "3/2", "1-2", "a/b"):
        with pytest.raises(ConfigError, match="K/N"):
            parse_shard(bad)
    with pytest.raises(ConfigError, match="no shard tables"):
        merge_shards(tmp_path)
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "cohort-1-of-3.csv").write_text(",".join(COLUMNS) + "\n")
    with pytest.raises(ConfigError, match="shards 2/3, 3/3 .* no table yet"):
        merge_shards(tmp_path)


def test_manifest_ids_and_unknown_inputs(tmp_path: Path, slides: Path) -> None:
    (tmp_path / "a").mkdir()
    shutil.copy(slides / "slide0.svs", tmp_path / "a" / "slide0.svs")
    man = tmp_path / "manifest.csv"
    man.write_text(f"path,label\n{slides / 'slide0.svs'},1\na/slide0.svs,0\n")
    items = slide_items([str(man)])
    assert [Path(it.path) for it in items] == [slides / "slide0.svs", tmp_path / "a" / "slide0.svs"]
    assert len({it.slide for it in items}) == 2 and items[1].slide.endswith("__a__slide0")  # same stems: folders too
    assert [it.slide for it in slide_items([str(slides)])] == [f"slide{i}" for i in range(5)]
    with pytest.raises(DataError, match="'.*nothing.svs' not found; give whole-slide images as files"):
        slide_items([str(tmp_path / "nothing.svs")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no whole-slide images"):
        slide_items([str(tmp_path / "empty")])


@pytest.fixture(scope="module")
def plain_table(tmp_path_factory: pytest.TempPathFactory, bundle: Path, slides: Path) -> list[str]:
    """cohort.csv lines (without seconds) of the five slides run plainly."""
    out = tmp_path_factory.mktemp("plain")
    assert main(["slide", str(bundle), str(slides), "--workers", "0", "--out", str(out)]) == 0
    return _without_seconds(out / "cohort.csv")


def test_shards_and_merge_give_the_plain_cohort_table(tmp_path: Path, bundle: Path, slides: Path,
                                                      plain_table: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert len(plain_table) == 6 and plain_table[0] == ",".join(c for c in COLUMNS if c != "seconds")
    assert len({line.split(",")[4] for line in plain_table[1:]}) > 1  # tumour fractions differ between slides
    for k in (1, 2):
        assert main(["slide", str(bundle), str(slides), "--workers", "0", "--out", str(tmp_path), "--shard", f"{k}/2"]) == 0
    assert "(shard 2/2: " in capsys.readouterr().out
    n1 = len(read_table(tmp_path / "shards" / "cohort-1-of-2.csv"))
    assert 0 < n1 < 5 and not (tmp_path / "cohort.csv").exists()
    assert main(["slide-merge", str(tmp_path)]) == 0
    assert "merged 2 shards: 5 slides, 0 failed" in capsys.readouterr().out
    assert _without_seconds(tmp_path / "cohort.csv") == plain_table


def test_dask_engine_gives_the_plain_cohort_table(tmp_path: Path, bundle: Path, slides: Path,
                                                  plain_table: list[str]) -> None:
    """A local 2-worker Dask cluster started by the run (one task per slide, one core each)."""
    pytest.importorskip("distributed", reason="the cluster extra is not installed (pip install 'medattn[cluster]')")
    assert main(["slide", str(bundle), str(slides), "--workers", "0", "--out", str(tmp_path), "--engine", "dask",
                 "--address", "auto"]) == 0
    assert _without_seconds(tmp_path / "cohort.csv") == plain_table


def test_idc_patient_slides_under_shards(tmp_path: Path, pred) -> None:
    """Real tissue: slides of IDC patients (patches at their x, y), sharded and merged = plain."""
    root = SHARED_DATA / "breast_idc"
    if not root.is_dir():
        pytest.skip(f"real data folder {root} is absent")
    for pid in ("10273", "8863"):
        assemble_idc_slide(root, pid, tmp_path / "slides" / f"{pid}.svs")
    kw = {"workers": 0, "model_mpp": 8.0, "min_tissue": 0.2}  # 64 level-0 px tiles at 4 µm/px
    items = slide_items([str(tmp_path / "slides")])
    plain = run_cohort(pred, items, CohortOptions(out=tmp_path / "plain", slide=kw))
    assert all(r["status"] == "ok" and r["tiles"] > 20 and 0 < r["tissue_mm2"] for r in plain["rows"])
    for k in (1, 2):
        run_cohort(pred, items, CohortOptions(out=tmp_path / "sh", slide=kw, shard=(k, 2)))
    merge_shards(tmp_path / "sh")
    assert _without_seconds(tmp_path / "sh" / "cohort.csv") == _without_seconds(tmp_path / "plain" / "cohort.csv")


def test_segmentation_cohort_rows(tmp_path: Path, dark_segmenter) -> None:
    from medattn.infer.testslides import write_pyramid
    from tests.infer.conftest import disc_image

    path = write_pyramid(tmp_path / "nuc.svs", disc_image(128, 128, [(30, 30), (90, 70)]), 0.5, levels=2, quality=95)
    res = run_cohort(dark_segmenter, slide_items([str(path)]), CohortOptions(
        out=tmp_path / "D", slide={"workers": 0, "block": 64, "region": (0, 0, 128, 128)}))
    assert res["rows"][0]["status"] == "ok" and res["rows"][0]["nuclei"] == 2
    assert (tmp_path / "D" / "cohort.csv").read_text().splitlines()[0] == \
        "slide,status,blocks,nuclei,seconds,warnings,error,path"


def test_outputs_inside_the_input_folder_are_not_slides(tmp_path: Path, bundle: Path, slides: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    shutil.copy(slides / "slide0.svs", root / "slide0.svs")
    for _ in range(2):  # the rerun must not take out/slide0/heatmap.tif for a slide
        assert main(["slide", str(bundle), str(root), "--out", str(root / "out"), "--workers", "0"]) == 0
    assert [r["slide"] for r in read_table(root / "out" / "cohort.csv")] == ["slide0"]
