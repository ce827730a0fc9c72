from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import torch

from medattn.data.formats.pcam_h5 import PCamH5Dataset, scan_pcam
from medattn.data.transforms import build_transforms
from medattn.errors import DataError


def test_reads_items_and_labels(synth_pcam):
    ds = PCamH5Dataset(synth_pcam, "valid")
    assert len(ds) == 32
    x, y = ds[3]
    assert x.shape == (3, 96, 96) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    with h5py.File(synth_pcam / "camelyonpatch_level_2_split_valid_x.h5") as f:
        raw = f["x"][3]
    assert torch.allclose(x, torch.from_numpy(raw).permute(2, 0, 1).float() / 255)
    with h5py.File(synth_pcam / "camelyonpatch_level_2_split_valid_y.h5") as f:
        assert float(y) == float(f["y"][3].reshape(-1)[0])
    assert np.array_equal(ds.labels(), np.array([int(ds[i][1]) for i in range(len(ds))]))


def test_masks_and_paired_transform(synth_pcam):
    from medattn.data.transforms import PairedTransform

    tf = PairedTransform(build_transforms("histo", train=True))
    ds = PCamH5Dataset(synth_pcam, "train", tf, with_masks=True)
    x, y, m = ds[0]
    assert x.shape == (3, 96, 96) and m.shape == (96, 96)
    assert float(y) == float(m[32:64, 32:64].any())  # flips/rot90 keep the centre rule


def test_lazy_handles_pickle_cleanly(synth_pcam):
    ds = PCamH5Dataset(synth_pcam, "test")
    _ = ds[0]
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._handles is None
    assert torch.equal(clone[1][0], ds[1][0])


def test_dataloader_with_workers(synth_pcam):
    ds = PCamH5Dataset(synth_pcam, "test", build_transforms("histo", train=False))
    dl = torch.utils.data.DataLoader(ds, batch_size=8, num_workers=2)
    batches = list(dl)
    assert sum(len(b[0]) for b in batches) == 32


def test_scan_table(synth_pcam):
    df = scan_pcam(synth_pcam)
    assert set(df["split"]) == {"train", "valid", "test"}
    assert len(df) == 96 + 32 + 32
    assert not set(df[df.split == "train"].group) & set(df[df.split == "test"].group)


def test_missing_file_error(tmp_path):
    with pytest.raises(DataError, match="camelyonpatch_level_2_split_train_x.h5' not found"):
        PCamH5Dataset(tmp_path, "train")


def test_unknown_split(tmp_path):
    with pytest.raises(DataError, match="unknown PCam split 'val'"):
        PCamH5Dataset(tmp_path, "val")


def test_not_hdf5(tmp_path):
    (tmp_path / "camelyonpatch_level_2_split_train_x.h5").write_text("not hdf5")
    (tmp_path / "camelyonpatch_level_2_split_train_y.h5").write_text("not hdf5")
    with pytest.raises(DataError, match="not a readable HDF5 file"):
        PCamH5Dataset(tmp_path, "train")


def _write(tmp_path, x, y):
    with h5py.File(tmp_path / "camelyonpatch_level_2_split_train_x.h5", "w") as f:
        f["x"] = x
    with h5py.File(tmp_path / "camelyonpatch_level_2_split_train_y.h5", "w") as f:
        f["y"] = y


def test_wrong_shape(tmp_path):
    _write(tmp_path, np.zeros((4, 64, 64, 3), np.uint8), np.zeros((4, 1, 1, 1), np.uint8))
    with pytest.raises(DataError, match=r"shape \(4, 64, 64, 3\).*N×96×96×3"):
        PCamH5Dataset(tmp_path, "train")


def test_label_count_mismatch(tmp_path):
    _write(tmp_path, np.zeros((4, 96, 96, 3), np.uint8), np.zeros((3, 1, 1, 1), np.uint8))
    with pytest.raises(DataError, match="one label per image"):
        PCamH5Dataset(tmp_path, "train")


def test_groups_are_slides_from_meta(synth_pcam, tmp_path):
    """Evaluation resamples slides: groups() follows ..._meta.csv and the dataset's indices."""
    import shutil

    import pandas as pd

    wsi = pd.read_csv(synth_pcam / "camelyonpatch_level_2_split_test_meta.csv")["wsi"].astype(str).tolist()
    assert PCamH5Dataset(synth_pcam, "test").groups() == wsi
    assert PCamH5Dataset(synth_pcam, "test", indices=[5, 1]).groups() == [wsi[5], wsi[1]]
    assert len(set(wsi)) < len(wsi)  # several patches per slide
    bare = tmp_path / "bare"
    shutil.copytree(synth_pcam, bare)
    (bare / "camelyonpatch_level_2_split_test_meta.csv").unlink()
    assert PCamH5Dataset(bare, "test").groups() is None
