"""Instance metrics: reference reproduction, arbitrary label values, empty masks, naive parity."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from conftest import SHARED_REFERENCE, shared_data
from medattn.errors import DataError
from medattn.metrics.instance import (
    aggregated_jaccard_index,
    aggregated_jaccard_index_plus,
    instance_metrics,
    panoptic_quality,
)
from medattn.metrics.segmentation import dice


def _naive(true: np.ndarray, pred: np.ndarray, match_iou: float = 0.5) -> dict[str, float]:
    """Straightforward per-instance implementation (masks compared one pair at a time)."""
    tids = [i for i in np.unique(true) if i != 0]
    pids = [j for j in np.unique(pred) if j != 0]
    inter = np.zeros((len(tids), len(pids)))
    union = np.zeros_like(inter)
    for a, i in enumerate(tids):
        tm = true == i
        for b, j in enumerate(pids):
            pm = pred == j
            inter[a, b] = np.logical_and(tm, pm).sum()
            union[a, b] = np.logical_or(tm, pm).sum()
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    t_area = np.array([(true == i).sum() for i in tids], float)
    p_area = np.array([(pred == j).sum() for j in pids], float)

    def aji(pairs: list[tuple[int, int]]) -> float:
        num = sum(inter[a, b] for a, b in pairs)
        den = sum(union[a, b] for a, b in pairs)
        used_t = {a for a, _ in pairs}
        used_p = {b for _, b in pairs}
        den += sum(t_area[a] for a in range(len(tids)) if a not in used_t)
        den += sum(p_area[b] for b in range(len(pids)) if b not in used_p)
        return num / den

    greedy = [(a, int(np.argmax(iou[a]))) for a in range(len(tids)) if iou[a].max() > 0]
    r, c = linear_sum_assignment(-iou)
    unique = [(a, b) for a, b in zip(r, c, strict=True) if iou[a, b] > 0]
    if match_iou >= 0.5:
        hits = [iou[a, b] for a in range(len(tids)) for b in range(len(pids)) if iou[a, b] > match_iou]
    else:
        hits = [iou[a, b] for a, b in zip(r, c, strict=True) if iou[a, b] > match_iou]
    tp = len(hits)
    dq = tp / (tp + 0.5 * (len(pids) - tp) + 0.5 * (len(tids) - tp))
    sq = float(np.mean(hits)) if hits else 0.0
    return {"aji": aji(greedy), "aji_plus": aji(unique), "dq": dq, "sq": sq, "pq": dq * sq}


def _random_instances(rng: np.random.Generator, shape=(48, 48), n=12, ids=None) -> np.ndarray:
    img = np.zeros(shape, np.int64)
    ids = ids if ids is not None else np.arange(1, n + 1)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for k in ids:
        cy, cx = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        r = rng.integers(2, 7)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = k
    return img


def test_reproduces_reference_csv() -> None:
    from PIL import Image

    gt_dir = shared_data("monuseg_train_subset") / "instance_masks"
    ref_dir = SHARED_REFERENCE / "monuseg_train_subset"
    if not (ref_dir / "reference.csv").is_file():
        pytest.skip(f"reference values {ref_dir / 'reference.csv'} are absent")
    rows = list(csv.DictReader((ref_dir / "reference.csv").open()))
    assert len(rows) >= 13
    for row in rows:
        true = np.asarray(Image.open(gt_dir / row["gt_file"]))
        pred = np.asarray(Image.open(ref_dir / row["pred_file"]))
        got = instance_metrics(true, pred)
        got["dice"] = dice(true, pred)
        for key in ("aji", "aji_plus", "dq", "sq", "pq", "dice"):
            assert got[key] == pytest.approx(float(row[key]), abs=1e-6), (row["image"], key)
        assert got["n_true"] == int(row["n_true"]) and got["n_pred"] == int(row["n_pred"])


@pytest.mark.parametrize("seed", range(6))
def test_matches_naive_implementation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    true = _random_instances(rng)
    pred = _random_instances(rng, n=14)
    want = _naive(true, pred)
    got = instance_metrics(true, pred)
    for key, val in want.items():
        assert got[key] == pytest.approx(val, abs=1e-12), key
    low = _naive(true, pred, match_iou=0.3)
    dq, sq, pq = panoptic_quality(true, pred, match_iou=0.3)
    assert (dq, sq, pq) == pytest.approx((low["dq"], low["sq"], low["pq"]), abs=1e-12)


def test_any_label_values_give_identical_results() -> None:
    rng = np.random.default_rng(7)
    true = _random_instances(rng, n=10)
    pred = _random_instances(rng, n=10)
    base = instance_metrics(true, pred)
    ids_t = np.unique(true)[1:]
    # order-preserving relabelling (ties in AJI pairing break by smallest id, like remap_label)
    big = np.zeros(true.max() + 1, np.int64)
    big[ids_t] = 10_000_000 + 7919 * np.arange(len(ids_t))
    neg = np.where(pred > 0, pred - 1000, 0)  # negative instance ids
    for t2, p2 in ((big[true], pred), (true, neg), (true.astype(np.uint16), pred.astype(np.float32)),
                   (true.astype(np.int32), (pred * 3).astype(np.uint32))):
        got = instance_metrics(t2, p2)
        for key in ("aji", "aji_plus", "dq", "sq", "pq", "n_true", "n_pred"):
            assert got[key] == pytest.approx(base[key], abs=1e-12), key


def test_empty_masks_are_defined() -> None:
    z = np.zeros((16, 16), np.uint16)
    one = z.copy()
    one[2:6, 2:6] = 5
    assert panoptic_quality(z, z) == (1.0, 1.0, 1.0)
    assert aggregated_jaccard_index(z, z) == 1.0 and aggregated_jaccard_index_plus(z, z) == 1.0
    assert panoptic_quality(one, z) == (0.0, 0.0, 0.0)
    assert panoptic_quality(z, one) == (0.0, 0.0, 0.0)
    assert aggregated_jaccard_index(one, z) == 0.0 and aggregated_jaccard_index_plus(z, one) == 0.0
    assert panoptic_quality(one, one) == (1.0, 1.0, 1.0)
    far = z.copy()
    far[10:14, 10:14] = 1
    assert panoptic_quality(one, far) == (0.0, 0.0, 0.0)
    assert aggregated_jaccard_index(one, far) == 0.0


def test_bad_input_raises_data_error() -> None:
    with pytest.raises(DataError, match="shape"):
        panoptic_quality(np.zeros((4, 4), int), np.zeros((4, 5), int))
    with pytest.raises(DataError, match="integers"):
        aggregated_jaccard_index(np.full((4, 4), 0.5), np.zeros((4, 4), int))
    with pytest.raises(DataError, match="match_iou"):
        panoptic_quality(np.zeros((4, 4), int), np.zeros((4, 4), int), match_iou=1.2)
