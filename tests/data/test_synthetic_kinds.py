"""Synthetic nuclei, cell folders, CXR14 and graded kinds: formats, determinism, readers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medattn.cli import main
from medattn.data.formats import (
    CXR14Dataset,
    FolderDataset,
    MoNuSegDataset,
    SegPairsDataset,
    detect_format,
    read_bbox_list,
    scan,
)
from medattn.data.images import read_mask
from medattn.data.synthetic import (
    GRADES,
    write_cell_folders,
    write_cxr14,
    write_graded,
    write_nuclei,
)


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def test_nuclei_mask_equals_rasterised_xml_and_touching(tmp_path: Path) -> None:
    root = write_nuclei(tmp_path / "n", n=2, seed=4)
    assert detect_format(root) == "seg_pairs"
    pairs = SegPairsDataset(root)
    xml = MoNuSegDataset(root)
    assert len(pairs) == len(xml) == 2
    for i in range(2):
        img, m1 = pairs[i]
        _, m2 = xml[i]
        assert img.shape == (3, 128, 128)
        assert np.array_equal(m1.numpy(), m2.numpy())  # the XML is exactly the mask
    m = read_mask(root / "masks" / "tile_000.png")
    assert m.dtype == np.uint16 and len(np.unique(m)) - 1 >= 20
    # touching nuclei: some pixel of one instance is 4-adjacent to a pixel of another
    a, b = m[:, :-1], m[:, 1:]
    assert ((a > 0) & (b > 0) & (a != b)).any()


def test_generators_are_deterministic(tmp_path: Path) -> None:
    assert _digest(write_cell_folders(tmp_path / "a", 2, seed=1)) == _digest(write_cell_folders(tmp_path / "b", 2, seed=1))
    assert _digest(write_cell_folders(tmp_path / "c", 2, seed=2)) != _digest(tmp_path / "a")
    assert _digest(write_cxr14(tmp_path / "d", 3, seed=1)) == _digest(write_cxr14(tmp_path / "e", 3, seed=1))


def test_cell_folders_read_back_with_junk_ignored(tmp_path: Path) -> None:
    root = write_cell_folders(tmp_path / "cells", n_per_class=3, seed=0, junk=True)
    df = scan(root)
    assert df.attrs["format"] == "folders" and df.attrs["ignored"] == 3
    assert len(df) == 15 and sorted(df["label"].unique()) == [0, 1, 2, 3, 4]
    assert {Path(f).suffix for f in df["file"]} == {".png", ".bmp"}
    ds = FolderDataset(root)
    x, y = ds[0]
    assert x.shape == (3, 64, 64) and int(y) == 0


def test_cxr14_csv_patients_bboxes(tmp_path: Path) -> None:
    root = write_cxr14(tmp_path / "cxr", n_patients=8, seed=3)
    entry = pd.read_csv(root / "Data_Entry_2017.csv")
    assert list(entry.columns[:4]) == ["Image Index", "Finding Labels", "Follow-up #", "Patient ID"]
    assert entry.groupby("Patient ID").size().max() > 1  # several images per patient
    df = scan(root)
    assert df.attrs["format"] == "cxr14" and len(df) == len(entry)
    ds = CXR14Dataset(root, df, mode="L")
    x, y = ds[0]
    assert x.shape == (1, 128, 128) and y.shape == (14,)
    labels = ds.labels()
    for row, vec in zip(entry.itertuples(), labels, strict=True):
        names = [] if row._2 == "No Finding" else row._2.split("|")
        assert vec.sum() == len(names)
    boxes = read_bbox_list(root / "BBox_List_2017.csv")
    assert len(boxes) > 0 and set(boxes["image_index"]) <= set(entry["Image Index"])
    lesion = read_mask(root / "lesion_masks" / boxes["image_index"].iloc[0])
    r = boxes.iloc[0]
    assert lesion[int(r.y):int(r.y + r.h), int(r.x):int(r.x + r.w)].any()


def test_graded_classes_in_order_with_tissue_masks(tmp_path: Path) -> None:
    root = write_graded(tmp_path / "g", n_per_class=2, seed=0)
    ds = FolderDataset(root / "images")
    assert ds.class_names == list(GRADES)
    seg = SegPairsDataset(root)
    assert len(seg) == 8
    _, mask = seg[0]
    frac = float((mask > 0).float().mean())
    assert 0.2 < frac < 0.8
    # darker (more nuclei) with grade
    means = [np.mean([ds[i][0].mean().item() for i in np.flatnonzero(ds.labels() == g)]) for g in range(4)]
    assert means[0] > means[3]


@pytest.mark.parametrize("kind", ["nuclei", "folders", "cxr14", "graded"])
def test_cli_synth_kinds(kind: str, tmp_path: Path) -> None:
    assert main(["synth", kind, str(tmp_path / kind), "--n", "4", "--seed", "1"]) == 0
    assert len(scan(tmp_path / kind if kind != "graded" else tmp_path / kind / "images")) > 0
