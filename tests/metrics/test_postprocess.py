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


def _soft_three_class(true: np.ndarray, erode: int = 2) -> np.ndarray:
    """Probabilities of a head that is sure of the interiors and unsure near borders."""
    inner = np.zeros(true.shape, bool)
    for k in range(1, true.max() + 1):
        inner |= ndi.binary_erosion(true == k, iterations=erode)
    p_in = np.where(inner, 0.9, np.where(true > 0, 0.35, 0.02))
    p_bg = np.where(true > 0, 0.05, 0.95)
    return np.stack([p_bg, p_in, 1 - p_bg - p_in]).astype(np.float32)


def test_three_class_thresholds_split_a_bridged_pair() -> None:
    from medattn.metrics.postprocess import instances_from_output

    true = _disks([(20, 20), (20, 32)], r=7)
    probs = _soft_three_class(true)
    # a weak bridge of "inside" between the two nuclei: argmax seeds merge, a higher seed threshold does not
    probs[:, 18:23, 24:29] = np.array([0.05, 0.6, 0.35])[:, None, None]
    merged = instances_from_output(probs, {"method": "three_class", "min_size": 5})
    split = instances_from_output(probs, {"method": "three_class", "seed_threshold": 0.8, "min_size": 5})
    assert merged.max() == 1
    assert split.max() == 2
    assert panoptic_quality(true, split)[2] > 0.8
    # foreground threshold: requiring 1 - P(bg) >= 0.99 leaves nothing
    assert instances_from_output(probs, {"method": "three_class", "fg_threshold": 0.99}).max() == 0


def test_instances_from_output_dispatch_and_errors() -> None:
    from medattn.metrics.postprocess import instances_from_output

    true = _disks([(20, 20), (20, 32), (45, 45)])
    fg = (true > 0).astype(np.float32) * 0.9
    two = np.stack([1 - fg, fg])
    np.testing.assert_array_equal(instances_from_output(two, {"method": "watershed", "min_distance": 4}),
                                  watershed_instances(fg, min_distance=4))
    np.testing.assert_array_equal(instances_from_output(fg, {"method": "connected"}), connected_instances(fg))
    with pytest.raises(DataError, match="unknown; use one of"):
        instances_from_output(fg, {"method": "magic"})
    with pytest.raises(DataError, match=r"unknown setting\(s\) \['min_seed'\]"):
        instances_from_output(fg, {"method": "watershed", "min_seed": 3})
    with pytest.raises(DataError, match=r"needs \(3, H, W\)"):
        instances_from_output(two, {"method": "three_class"})


def test_choose_postprocess_picks_best_mean_aji() -> None:
    from medattn.metrics.instance import instance_metrics
    from medattn.metrics.postprocess import (
        POSTPROCESS_GRID,
        choose_postprocess,
        instances_from_output,
    )

    trues = [_disks([(20, 20), (20, 32), (45, 45)]), _disks([(15, 15), (15, 27), (40, 40), (40, 52)])]
    outs = [_soft_three_class(t) for t in trues]
    best, score, table = choose_postprocess(outs, trues)
    assert len(table) == len(POSTPROCESS_GRID)
    # independent recomputation of every grid point
    expect = [np.mean([instance_metrics(t, instances_from_output(o, s))["aji"] for o, t in zip(outs, trues, strict=True)])
              for s in POSTPROCESS_GRID]
    assert score == pytest.approx(max(expect))
    assert [round(v, 12) for _, v in table] == [round(v, 12) for v in expect]
    assert best == POSTPROCESS_GRID[int(np.argmax(expect))]
    assert score > 0.8
    with pytest.raises(DataError, match="one truth per output"):
        choose_postprocess(outs, trues[:1])


def _hover_output(true: np.ndarray, blur: float = 0.0) -> np.ndarray:
    """``(4, H, W)`` hover-head output of the true maps (background, foreground, horizontal, vertical),
    optionally blurred like a network's."""
    import torch

    from medattn.engine.seg_task import hover_target

    fg, hv = hover_target(torch.from_numpy(true.astype(np.int64))[None])
    p = fg[0].numpy() * 0.9 + 0.05
    maps = hv[0].numpy()
    if blur:
        p, maps = ndi.gaussian_filter(p, blur), np.stack([ndi.gaussian_filter(m, blur) for m in maps])
    return np.concatenate([(1 - p)[None], p[None], maps]).astype(np.float32)


@pytest.mark.parametrize("blur", [0.0, 1.5])
def test_hover_separates_touching_nuclei(blur: float) -> None:
    from medattn.metrics.instance import instance_metrics
    from medattn.metrics.postprocess import hover_energy, hover_instances, instances_from_output

    true = _disks([(20, 20), (20, 33), (45, 45), (46, 32)], r=7)  # two pairs touching
    out = _hover_output(true, blur)
    lab = instances_from_output(out, {"method": "hover", "min_size": 5})
    np.testing.assert_array_equal(lab, hover_instances(out, min_size=5))
    assert lab.max() == 4
    assert instance_metrics(true, lab)["aji"] > (0.97 if not blur else 0.85)
    # the same foreground merges the touching pairs by connected components
    merged = instances_from_output(out, {"method": "connected"})
    assert merged.max() == 2 and instance_metrics(true, merged)["aji"] < 0.6
    # the energy is high where two nuclei touch, about 0 at their centres
    e = hover_energy(out[2:])
    assert e[20, 25:31].max() > (0.4 if not blur else 0.2) and e[20, 20] < 0.05 and e[45, 45] < 0.05


def test_hover_versus_three_class_on_a_bridged_pair() -> None:
    """A foreground bridge between two nuclei merges a 3-class head's seeds; the distance maps still
    change sign across it, so the hover head keeps the two nuclei apart."""
    from medattn.metrics.instance import instance_metrics
    from medattn.metrics.postprocess import instances_from_output

    true = _disks([(20, 20), (20, 32)], r=7)
    three = _soft_three_class(true)
    three[:, 18:23, 24:29] = np.array([0.05, 0.6, 0.35])[:, None, None]
    hover = _hover_output(true, blur=1.0)
    hover[1, 18:23, 24:29], hover[0, 18:23, 24:29] = 0.9, 0.1
    assert instances_from_output(three, {"method": "three_class", "min_size": 5}).max() == 1
    lab = instances_from_output(hover, {"method": "hover", "min_size": 5})
    assert lab.max() == 2 and instance_metrics(true, lab)["aji"] > 0.85


def test_hover_settings_grid_and_defaults() -> None:
    from medattn.metrics.postprocess import (
        POSTPROCESS_GRID,
        POSTPROCESS_GRID_BINARY,
        POSTPROCESS_GRID_HOVER,
        check_setting,
        choose_postprocess,
        default_postprocess,
        instances_from_output,
        postprocess_grid,
    )

    assert postprocess_grid("hover") is POSTPROCESS_GRID_HOVER and postprocess_grid("three_class") is POSTPROCESS_GRID
    assert postprocess_grid("binary") is POSTPROCESS_GRID_BINARY
    assert {s["method"] for s in POSTPROCESS_GRID_HOVER} == {"hover", "watershed", "connected"}
    assert default_postprocess("hover", 4) == {"method": "hover"}
    assert default_postprocess("three_class", 3) == {"method": "three_class"}
    assert default_postprocess("binary", 2) == {"method": "connected"}
    assert check_setting({"method": "hover", "energy_threshold": 0.3})[0] == "hover"
    with pytest.raises(DataError, match=r"unknown setting\(s\) \['min_distance'\]"):
        check_setting({"method": "hover", "min_distance": 3})
    with pytest.raises(DataError, match=r"hover output must be \(4, H, W\)"):
        instances_from_output(np.zeros((3, 8, 8), np.float32), {"method": "hover"})
    trues = [_disks([(20, 20), (20, 33), (45, 45)], r=7), _disks([(15, 15), (15, 28), (40, 40)], r=7)]
    outs = [_hover_output(t, blur=1.0) for t in trues]
    best, score, table = choose_postprocess(outs, trues, seg_target="hover")
    assert len(table) == len(POSTPROCESS_GRID_HOVER)
    assert best["method"] == "hover" and score > 0.9
    assert instances_from_output(np.zeros((4, 8, 8), np.float32), {"method": "hover"}).max() == 0
