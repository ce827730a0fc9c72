"""The audit flags transformed copies across splits (flips, rotations, crops, rescales, recolouring,
greyscale), keeps look-alike X-rays apart, and warns about '<source>-...' names without groups."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageEnhance

from medattn.cli import main
from medattn.data.audit import MIN_DETAIL_CORRELATION, REASON, audit
from medattn.data.formats import scan
from medattn.data.splits import make_split, read_split_csv, write_split_csv
from tests.conftest import shared_data


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    tex = gaussian_filter(rng.normal(size=(size, size)), 2.0) * 60  # channels share the structure,
    x = tex[..., None] * rng.uniform(0.5, 1.2, 3) + rng.uniform(90, 170, 3)  # like stained tissue
    return np.clip(x, 0, 255).astype(np.uint8)


def _hue(im: Image.Image) -> Image.Image:
    h = np.asarray(im.convert("HSV")).copy()
    h[..., 0] = (h[..., 0].astype(int) + 25) % 256
    return Image.fromarray(h, "HSV").convert("RGB")


TRANSFORMS = {
    "flip": lambda im: im.transpose(Image.FLIP_LEFT_RIGHT),
    "rot90": lambda im: im.transpose(Image.ROTATE_90),
    "rot180": lambda im: im.transpose(Image.ROTATE_180),
    "transpose": lambda im: im.transpose(Image.TRANSPOSE),
    "crop": lambda im: im.crop((im.width // 7, 0, im.width, im.height * 6 // 7)),  # 86 % corner crop
    "crop_flip": lambda im: im.crop((0, 0, im.width * 6 // 7, im.height * 6 // 7)).transpose(Image.FLIP_TOP_BOTTOM),
    "rescale": lambda im: im.resize((im.width * 3 // 2, im.height * 3 // 2), Image.BICUBIC),
    "downscale": lambda im: im.resize((im.width // 2, im.height // 2), Image.BILINEAR),
    "bgr": lambda im: Image.fromarray(np.asarray(im)[..., ::-1].copy()),
    "hue": _hue,
    "saturation": lambda im: ImageEnhance.Color(im).enhance(0.4),
    "brightness": lambda im: ImageEnhance.Brightness(im).enhance(1.2),
    "greyscale": lambda im: im.convert("L").convert("RGB"),
}


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict[str, tuple[str, str]]]:
    """A clean 3-way split of 60 textures plus one transformed copy of a train image per transform, in test."""
    root = tmp_path_factory.mktemp("planted") / "data"
    rng = np.random.default_rng(3)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for k in range(30):
            Image.fromarray(_texture(rng, 96)).save(root / cls / f"{cls}{k:02d}.png")
    clean = make_split(scan(root), seed=0)
    train = clean.loc[clean["split"] == "train", "file"].tolist()
    pairs = {}
    for (kind, tf), src in zip(TRANSFORMS.items(), train, strict=False):
        dst = f"{src.split('/')[0]}/copy_{kind}.png"
        tf(Image.open(root / src).convert("RGB")).save(root / dst)
        pairs[kind] = (src, dst)
    extra = pd.DataFrame({"file": [d for _, d in pairs.values()], "split": "test",
                          "group": [d for _, d in pairs.values()], "label": "0"})
    return audit(root, pd.concat([clean, extra], ignore_index=True)), pairs


@pytest.mark.parametrize("kind", sorted(TRANSFORMS))
def test_transformed_copy_across_splits_is_flagged(planted: tuple[dict, dict], kind: str) -> None:
    rep, pairs = planted
    assert not rep["passed"]
    src, dst = pairs[kind]
    hits = [e for e in rep["near_duplicates"] if {e["file_a"], e["file_b"]} == {src, dst}]
    assert len(hits) == 1, kind
    e = hits[0]
    assert e["cross_split"] and e["reason"] == REASON
    assert e["correlation"] >= 0.95 and e["detail_correlation"] >= MIN_DETAIL_CORRELATION
    assert src in rep["leaking_files"] and dst in rep["leaking_files"]


def test_only_the_planted_copies_are_flagged(planted: tuple[dict, dict]) -> None:
    rep, pairs = planted
    flagged = {frozenset((e["file_a"], e["file_b"])) for e in rep["near_duplicates"]}
    assert flagged == {frozenset(p) for p in pairs.values()}
    assert rep["leakage"] == {"group_overlap": 0, "exact_cross_split": 0, "near_cross_split": len(TRANSFORMS)}


def _herlev_like(root: Path, n_sources: int = 24, crops: int = 3, seed: int = 0) -> Path:
    """Class folders of overlapping crops cut from shared source images: ``<source>-<cell>-00k.png``."""
    rng = np.random.default_rng(seed)
    for s in range(n_sources):
        cls = "normal" if s % 2 else "abnormal"
        (root / cls).mkdir(parents=True, exist_ok=True)
        big = _texture(rng, 160)
        for k in range(crops):
            y, x = rng.integers(0, 96, 2)
            Image.fromarray(big[y:y + 64, x:x + 64]).save(root / cls / f"{1000 + s}-{2000 + 10 * s + k}-00{k}.png")
    return root


def test_source_names_warn_and_group_pattern_finds_shared_sources(tmp_path: Path, capsys) -> None:
    root = _herlev_like(tmp_path / "cells")
    by_file = tmp_path / "by_file.csv"
    assert main(["split", str(root), "--out", str(by_file), "--seed", "1"]) == 0
    assert "every file is its own group" in capsys.readouterr().out
    out = tmp_path / "audit.json"
    main(["audit", str(root), "--split-csv", str(by_file), "--out", str(out)])
    rep = json.loads(out.read_text())
    assert any("--group-pattern '^(\\d+)-'" in w for w in rep["warnings"])
    assert "WARNING every file is its own group" in capsys.readouterr().out
    # the same file-level split audited with the pattern: source images on both sides
    assert main(["audit", str(root), "--split-csv", str(by_file), "--group-pattern", r"^(\d+)-", "--strict",
                 "--out", str(out)]) == 1
    rep = json.loads(out.read_text())
    assert rep["leakage"]["group_overlap"] > 0 and not rep["passed"] and rep["warnings"] == []
    assert {o["group"] for o in rep["group_overlap"]} <= {str(1000 + s) for s in range(24)}
    # a split made with the pattern keeps every source on one side
    grouped = tmp_path / "grouped.csv"
    assert main(["split", str(root), "--out", str(grouped), "--group-pattern", r"^(\d+)-"]) == 0
    assert read_split_csv(grouped)["group"].nunique() == 24
    assert main(["audit", str(root), "--split-csv", str(grouped), "--group-pattern", r"^(\d+)-", "--strict",
                 "--out", str(out)]) == 0
    assert main(["audit", str(root), "--group-pattern", r"^(\d+", "--out", str(out)]) == 2  # bad regex


def test_overview_counts_source_groups_and_pattern_needs_folders(tmp_path: Path, synth_pcam: Path) -> None:
    from medattn.overview import dataset_overview

    root = _herlev_like(tmp_path / "cells", n_sources=8, crops=2)
    ov = dataset_overview(root, per_class=1, max_stats=4, group_pattern=r"^(\d+)-")
    assert int(ov.groups.loc["all", "patients"]) == 8
    assert int(dataset_overview(root, per_class=1, max_stats=4).groups.loc["all", "patients"]) == 16
    assert main(["overview", str(root), "--group-pattern", r"^(\d+)-", "--out", str(tmp_path / "ov"),
                 "--max-stats", "4"]) == 0
    assert main(["split", str(synth_pcam), "--group-pattern", "x", "--out", str(tmp_path / "s.csv")]) == 2


def test_clean_idc_split_passes() -> None:
    root = shared_data("breast_idc")
    rep = audit(root, make_split(scan(root), seed=0))
    assert rep["passed"] and rep["near_duplicates"] == [] and rep["warnings"] == []


def test_lookalike_xrays_of_different_patients_stay_apart() -> None:
    """Clean NIH split: chest X-rays of different patients can match at low resolution (smoothed
    correlation ≥ 0.95) but not in fine detail; they are listed as similar, never as leakage."""
    root = shared_data("nih_chestxray14_dev")
    rep = audit(root, make_split(scan(root), seed=0))
    assert rep["passed"] and rep["leakage"]["near_cross_split"] == 0
    sim = rep["similar_across_splits"]
    assert sim, "the look-alike pairs this test guards are gone; re-check the thresholds"
    assert all(e["correlation"] >= 0.95 and e["detail_correlation"] < MIN_DETAIL_CORRELATION for e in sim)


def test_herlev_file_split_leaks_sources_and_pattern_split_is_clean(tmp_path: Path) -> None:
    root = shared_data("herlev_dev") / "images"
    by_file = make_split(scan(root), seed=0)
    rep = audit(root, by_file)
    assert rep["leakage"]["group_overlap"] == 0 and "every file is its own group" in rep["warnings"][0]
    for e in rep["near_duplicates"]:  # overlapping crops found by pixels come from one source image
        assert e["file_a"].split("/")[-1].split("-")[0] == e["file_b"].split("/")[-1].split("-")[0]
    rep = audit(root, by_file, group_pattern=r"^(\d+)-")
    assert not rep["passed"] and rep["leakage"]["group_overlap"] > 0
    grouped = make_split(scan(root, group_pattern=r"^(\d+)-"), seed=0)
    write_split_csv(grouped, tmp_path / "split.csv")
    assert audit(root, read_split_csv(tmp_path / "split.csv"), group_pattern=r"^(\d+)-")["passed"]
