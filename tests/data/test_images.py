"""Robust image reading: explicit mode conversions, bad files named, on_bad_file policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medattn.data.formats import TableDataset
from medattn.data.images import check_image, read_image
from medattn.errors import DataError


def test_modes_are_converted_explicitly(tmp_path: Path) -> None:
    g = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))
    Image.fromarray(g).save(tmp_path / "gray.png")
    assert read_image(tmp_path / "gray.png").shape == (32, 32, 3)
    assert np.array_equal(read_image(tmp_path / "gray.png", mode="L"), g)
    rgba = np.zeros((8, 8, 4), np.uint8)  # fully transparent black -> white, not black tissue
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    assert (read_image(tmp_path / "rgba.png") == 255).all()
    Image.fromarray(np.full((8, 8, 3), 60, np.uint8)).convert("P").save(tmp_path / "pal.png")
    assert read_image(tmp_path / "pal.png").shape == (8, 8, 3)
    a16 = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 40)
    Image.fromarray(a16).save(tmp_path / "deep.png")
    out = read_image(tmp_path / "deep.png", mode="L")
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255
    assert check_image(tmp_path / "deep.png")["problem"] == "wrong-mode"


def test_bad_files_raise_dataerror_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "zero.png").write_bytes(b"")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 90).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.png").write_text("hello")
    for name in ("zero.png", "trunc.png", "text.png", "missing.png"):
        with pytest.raises(DataError, match=name):
            read_image(tmp_path / name)
    assert check_image(tmp_path / "zero.png")["problem"] == "zero-byte"


def test_skip_policy_never_kills_an_epoch(tmp_path: Path) -> None:
    for i in range(3):
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "1.png").write_bytes(b"")
    table = pd.DataFrame({"file": ["0.png", "1.png", "2.png"], "label": [0, 1, 2]})
    strict = TableDataset(tmp_path, table)
    with pytest.raises(DataError):
        strict[1]
    lenient = TableDataset(tmp_path, table, on_bad_file="skip")
    items = [lenient[i] for i in range(3)]
    assert [int(y) for _, y in items] == [0, 2, 2]
    assert list(lenient.bad_files) == ["1.png"]
    lenient.policy.write(tmp_path / "bad_files.csv")
    assert "1.png" in (tmp_path / "bad_files.csv").read_text()


def test_scanners_follow_linked_folders_once(tmp_path: Path) -> None:
    """A data set assembled from links to patient or class folders is read (``Path.rglob`` skips
    linked folders), and a link loop ends."""
    from medattn.data.formats.folders import scan_folders
    from medattn.data.formats.idc import scan_idc

    store = tmp_path / "store"
    for pid in ("101", "102"):
        for c in (0, 1):
            d = store / pid / str(c)
            d.mkdir(parents=True)
            Image.fromarray(np.full((50, 50, 3), 100 + c, np.uint8)).save(d / f"{pid}_idx5_x50_y{c}0_class{c}.png")
    cohort = tmp_path / "cohort" / "images"
    cohort.mkdir(parents=True)
    (cohort / "101").symlink_to(store / "101", target_is_directory=True)
    (cohort / "loop").symlink_to(cohort.parent, target_is_directory=True)
    t = scan_idc(tmp_path / "cohort")
    assert sorted(t["group"]) == ["101", "101"] and sorted(t["label"]) == [0, 1]
    cls = tmp_path / "classes"
    cls.mkdir()
    (cls / "a").symlink_to(store / "101" / "0", target_is_directory=True)
    (cls / "b").symlink_to(store / "102" / "1", target_is_directory=True)
    f = scan_folders(cls)
    assert sorted(f["class_name"]) == ["a", "b"]
