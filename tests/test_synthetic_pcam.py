from __future__ import annotations

import h5py
import numpy as np
import pandas as pd

from medattn.data.synthetic import PCamDifficulty, make_pcam_arrays, write_pcam


def test_label_follows_centre_rule():
    x, y, m = make_pcam_arrays(60, seed=1)
    assert x.shape == (60, 96, 96, 3) and x.dtype == np.uint8
    assert m.shape == (60, 96, 96)
    for i in range(60):
        assert y[i] == int(m[i, 32:64, 32:64].any())
    assert 0.3 < y.mean() < 0.7
    # some negatives carry tumour outside the centre (distractors)
    assert any(m[i].any() and y[i] == 0 for i in range(60))


def test_deterministic_per_seed():
    a = make_pcam_arrays(5, seed=7)
    b = make_pcam_arrays(5, seed=7)
    c = make_pcam_arrays(5, seed=8)
    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


def test_tumour_nuclei_darker_than_stroma():
    x, y, m = make_pcam_arrays(20, seed=2, difficulty=PCamDifficulty(contrast=1.0))
    inside = x[m.astype(bool)].mean()
    outside = x[~m.astype(bool)].mean()
    assert inside < outside - 10


def test_write_official_layout(tmp_path):
    write_pcam(tmp_path, {"train": 8, "valid": 4, "test": 4}, seed=0)
    for split, n in (("train", 8), ("valid", 4), ("test", 4)):
        with h5py.File(tmp_path / f"camelyonpatch_level_2_split_{split}_x.h5") as f:
            assert f["x"].shape == (n, 96, 96, 3) and f["x"].dtype == np.uint8
        with h5py.File(tmp_path / f"camelyonpatch_level_2_split_{split}_y.h5") as f:
            assert f["y"].shape == (n, 1, 1, 1) and f["y"].dtype == np.uint8
        with h5py.File(tmp_path / f"camelyonpatch_level_2_split_{split}_mask.h5") as f:
            assert f["mask"].shape == (n, 96, 96)
        meta = pd.read_csv(tmp_path / f"camelyonpatch_level_2_split_{split}_meta.csv")
        assert len(meta) == n and meta["wsi"].str.startswith(f"synth_{split}").all()
    assert not list(tmp_path.glob(".*tmp"))
