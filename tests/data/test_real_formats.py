"""Format adapters on the real dev data in ../shared/data (skipped when absent)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import shared_data
from medattn.data.formats import (
    FINDINGS,
    CXR14Dataset,
    FolderDataset,
    SegPairsDataset,
    detect_format,
    idc_mosaic,
    open_dataset,
    scan,
    scan_idc,
)
from medattn.data.splits import make_split


def test_idc_patient_split_has_zero_overlap() -> None:
    root = shared_data("breast_idc")
    assert detect_format(root) == "idc"
    df = scan_idc(root)
    assert len(df) == 6163 and df["group"].nunique() == 177
    split = make_split(df, ratios=(0.7, 0.15, 0.15), seed=0)
    per = {s: set(split.loc[split["split"] == s, "group"]) for s in ("train", "valid", "test")}
    assert not per["train"] & per["test"] and not per["train"] & per["valid"] and not per["valid"] & per["test"]
    assert sum(len(v) for v in per.values()) == 177
    ds = open_dataset(root, "idc", split="test", split_table=split)
    assert set(ds.groups()) == per["test"]
    x, y = ds[0]
    assert x.shape[0] == 3 and int(y) in (0, 1)


def test_idc_mosaic_rebuilds_a_slide() -> None:
    root = shared_data("breast_idc")
    df = scan_idc(root)
    pid = df["group"].value_counts().index[-1]
    mosaic, labels = idc_mosaic(root, df, pid)
    assert mosaic.dtype == np.uint8 and mosaic.shape[:2] == labels.shape
    assert (labels >= 0).sum() > 0


def test_herlev_loads_seven_classes() -> None:
    root = shared_data("herlev_dev") / "images"
    ds = FolderDataset(root)
    assert len(ds.class_names) == 7 and len(ds) == 501
    assert sorted(set(ds.labels().tolist())) == list(range(7))
    x, y = ds[len(ds) - 1]
    assert x.shape[0] == 3 and 0 <= int(y) < 7


def test_nih_dev_451_images_with_labels_matching_csv() -> None:
    root = shared_data("nih_chestxray14_dev")
    df = scan(root)
    assert df.attrs["format"] == "cxr14" and len(df) == 451
    ref = pd.read_csv(root / "labels.csv")
    m = df.merge(ref, on="file", suffixes=("", "_ref"))
    assert len(m) == 451
    for f in FINDINGS:
        assert (m[f] == m[f + "_ref"]).all(), f
    ds = CXR14Dataset(root, df)
    y = ds.labels()
    assert y.shape == (451, 14)
    assert np.array_equal(y, m[list(FINDINGS)].to_numpy(np.float32))
    no_finding = (m["finding_labels"] == "No Finding").to_numpy()
    assert (y[no_finding] == 0).all()
    assert df.attrs["absent"] > 0  # the full CSV lists far more images than the dev copy: reported, not fatal


def test_monuseg_masks_load_with_their_nucleus_counts() -> None:
    root = shared_data("monuseg_train_subset")
    ds = SegPairsDataset(root)
    counts = ds.instance_counts()
    assert len(counts) == 13 and sum(counts) == 4949
    assert min(counts) == 294 and max(counts) == 472
    img, mask = ds[0]
    assert img.shape[1:] == mask.shape


def test_dsb2018_instance_mask_tif() -> None:
    root = shared_data("dsb2018_stardist_sample")
    from medattn.data.images import read_image, read_mask

    m = read_mask(root / "instance_mask.tif")
    assert m.dtype == np.uint16 and len(np.unique(m)) - 1 == 125
    img = read_image(root / "image.tif")  # uint16 fluorescence: stretched explicitly
    assert img.dtype == np.uint8 and img.shape == (512, 512, 3) and img.max() == 255


@pytest.mark.parametrize("name", ["sipakmed_samples"])
def test_sipakmed_samples_open(name: str) -> None:
    root = shared_data(name) / "images"
    from medattn.data.images import read_image

    for p in sorted(root.iterdir()):
        assert read_image(p).ndim == 3
