"""Class folders: groups from a file-name pattern keep crops of one source image together."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medattn.data.formats import scan_folders
from medattn.data.splits import make_split
from medattn.errors import DataError


def _tree(root: Path, names: dict[str, list[str]]) -> Path:
    for cls, files in names.items():
        (root / cls).mkdir(parents=True)
        for f in files:
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / cls / f)
    return root


def test_group_pattern_groups_by_source_image(tmp_path: Path) -> None:
    files = {"a": [f"{src}-{cell}-00{k}.png" for src in (100, 101, 102, 103) for cell in (7,) for k in (1, 2)],
             "b": [f"{src}-9-001.png" for src in (100, 104, 105, 106, 107, 108)]}
    root = _tree(tmp_path / "cells", files)
    plain = scan_folders(root)
    assert plain["group"].nunique() == len(plain)  # default: every file its own group
    t = scan_folders(root, group_pattern=r"^(\d+)-")
    assert sorted(t["group"].unique()) == ["100", "101", "102", "103", "104", "105", "106", "107", "108"]
    assert (t["group"] == "100").sum() == 3  # two crops in class a, one in class b
    # whole match when the pattern has no capture group
    assert set(scan_folders(root, group_pattern=r"^\d+")["group"]) == set(t["group"])
    split = make_split(t, ratios=(0.5, 0.25, 0.25), seed=0)
    sides = split.groupby("group")["split"].nunique()
    assert (sides == 1).all()  # no source image on two sides


def test_unmatched_names_stay_alone_and_bad_patterns_fail(tmp_path: Path) -> None:
    root = _tree(tmp_path / "cells", {"a": ["100-1-001.png", "100-1-002.png", "odd_name.png"]})
    t = scan_folders(root, group_pattern=r"^(\d+)-")
    assert t.set_index("file")["group"].to_dict() == {"a/100-1-001.png": "100", "a/100-1-002.png": "100",
                                                      "a/odd_name.png": "a/odd_name.png"}
    assert t.attrs["ungrouped"] == 1 and t.attrs["ungrouped_examples"] == ["a/odd_name.png"]
    with pytest.raises(DataError, match="not a valid regular expression"):
        scan_folders(root, group_pattern=r"^(\d+")


def test_datasets_take_the_groups_the_split_was_made_with(tmp_path: Path) -> None:
    from medattn.data.formats import open_dataset

    files = {"a": [f"{src}-1-00{k}.png" for src in (100, 101, 102, 103) for k in (1, 2)],
             "b": [f"{src}-9-001.png" for src in (104, 105, 106, 107)]}
    root = _tree(tmp_path / "cells", files)
    table = scan_folders(root, group_pattern=r"^(\d+)-")
    split = make_split(table, ratios=(0.5, 0.25, 0.25), seed=0)
    for s in ("train", "valid", "test"):
        ds = open_dataset(root, "folders", split=s, split_table=split)  # the scanner alone knows no groups
        want = split.set_index("file").loc[ds.item_ids(), "group"].astype(str).tolist()
        assert ds.groups() == want
        assert all("/" not in g for g in ds.groups())
