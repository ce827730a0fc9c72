"""Instance post-processing: watershed splits touching nuclei; 3-class head recovers instances."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from medattn.errors import DataError
from medattn.metrics.instance import panoptic_quality
from medattn.metrics.postprocess import (
    connected_instances,
    three_class_instances,
    watershed_instances,
)


def _disks(centres: list[tuple[int, int]], r: int = 7, shape=(64, 64)) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    out = np.zeros(shape, np.int32)
    for k, (cy, cx) in enumerate(centres, start=1):
        out[((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) & (out == 0)] = k
    return out


def test_watershed_splits_touching_nuclei() -> None:
    true = _disks([(20, 20), (20, 32), (45, 45)])
    prob = (true > 0).astype(np.float32) * 0.9
    cc = connected_instances(prob)
    assert cc.max() == 2  # the touching pair merges
    ws = watershed_instances(prob, min_distance=4)
    assert ws.max() == 3
    dq, sq, pq = panoptic_quality(true, ws)
    assert dq == 1.0 and pq > 0.85


def test_min_size_and_empty() -> None:
    m = np.zeros((20, 20), bool)
    m[1:3, 1:3] = True
    m[10:16, 10:16] = True
    assert connected_instances(m, min_size=5).max() == 1
    assert watershed_instances(np.zeros((8, 8))).max() == 0
    with pytest.raises(DataError, match="2-D"):
        connected_instances(np.zeros((2, 8, 8)))


@pytest.mark.parametrize("layout", ["chw", "hwc", "map"])
def test_three_class_head(layout: str) -> None:
    true = _disks([(20, 20), (20, 33), (45, 45), (46, 20)], r=6)
    inner = np.zeros_like(true)
    for k in range(1, true.max() + 1):
        inner[ndi.binary_erosion(true == k, iterations=2)] = k
    cls = np.where(inner > 0, 1, np.where(true > 0, 2, 0))
    probs = np.stack([cls == c for c in range(3)]).astype(np.float32) * 0.8 + 0.1
    arg = {"chw": probs, "hwc": np.moveaxis(probs, 0, 2), "map": cls}[layout]
    lab = three_class_instances(arg, min_size=5)
    assert lab.max() == 4
    assert panoptic_quality(true, lab)[2] > 0.9
