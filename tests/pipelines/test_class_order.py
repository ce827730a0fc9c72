"""An explicit class order (recipe ``data.class_names``) must reach the labels the model trains on."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def test_open_dataset_labels_follow_explicit_class_order(tmp_path: Path) -> None:
    from medattn.data.formats import open_dataset
    from medattn.data.images import write_image

    for name in ("a_first", "b_second", "c_third"):
        write_image(tmp_path / name / "x.png", np.zeros((8, 8, 3), np.uint8))
    order = ["c_third", "a_first", "b_second"]  # not the sorted order
    ds = open_dataset(tmp_path, "folders", classes=order)
    by_file = dict(zip(ds.item_ids(), ds.labels(), strict=True))
    assert {Path(f).parent.name: int(v) for f, v in by_file.items()} == {"c_third": 0, "a_first": 1, "b_second": 2}
