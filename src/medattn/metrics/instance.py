"""Instance-segmentation metrics: panoptic quality (DQ, SQ, PQ), AJI and AJI+.

Everything is computed from one contingency table of the two label images (``np.bincount`` on
paired pixel labels), never by looping over instances and masking pixels. Label values are
arbitrary (0 is background; any other integer is an instance id, ids need not be consecutive),
so no relabelling is needed first. The definitions follow Kirillov et al. 2019 (PQ), Kumar et al.
2017 (AJI) and Graham et al. 2019 (AJI+, unique matching), in the form used by HoVer-Net's
evaluation (PQ matches at IoU strictly above ``match_iou``).

Empty images have defined values: when neither image has an instance every metric is 1.0 (nothing
to find, nothing found); when only one has instances every metric is 0.0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from medattn.errors import DataError

__all__ = [
    "InstanceOverlap",
    "instance_overlap",
    "panoptic_quality",
    "aggregated_jaccard_index",
    "aggregated_jaccard_index_plus",
    "instance_metrics",
]

_DENSE_LIMIT = 4_000_000  # largest (n_true+1)*(n_pred+1) table kept dense


def _dense_labels(lab: np.ndarray, name: str) -> tuple[np.ndarray, int]:
    """Map arbitrary instance ids to 1..n in increasing id order (0 stays background)."""
    a = np.asarray(lab)
    if a.dtype == bool:
        a = a.astype(np.uint8)
    if not np.issubdtype(a.dtype, np.integer):
        if not np.issubdtype(a.dtype, np.floating) or not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise DataError(f"{name}: instance labels must be integers (got dtype {a.dtype}); "
                            "pass a label image such as uint16/int32")
        a = a.astype(np.int64)
    flat = a.reshape(-1)
    if flat.size == 0:
        return np.zeros(0, np.int64), 0
    lo, hi = int(flat.min()), int(flat.max())
    if lo >= 0 and hi <= 4 * flat.size + 65536:
        present = np.bincount(flat, minlength=hi + 1) > 0
        present[0] = False
        lut = np.zeros(hi + 1, np.int64)
        n = int(present.sum())
        lut[present] = np.arange(1, n + 1)
        return lut[flat], n
    ids, inv = np.unique(flat, return_inverse=True)
    inv = inv.reshape(-1).astype(np.int64)
    zero = np.searchsorted(ids, 0)
    has_zero = zero < len(ids) and ids[zero] == 0
    # renumber: ids below 0 keep order, 0 -> 0, ids above shift so that numbering is 1..n
    out = inv + 1
    if has_zero:
        out[inv == zero] = 0
        out[inv > zero] -= 1
    return out, len(ids) - int(has_zero)


@dataclass(frozen=True)
class InstanceOverlap:
    """Overlap of two label images.

    Attributes:
        true_area: pixel count of each true instance (index ``i`` = ``i``-th smallest id).
        pred_area: pixel count of each predicted instance.
        pair_true, pair_pred: indices of every (true, pred) pair that shares at least one pixel.
        pair_inter: shared pixels of each pair.
    """

    true_area: np.ndarray
    pred_area: np.ndarray
    pair_true: np.ndarray
    pair_pred: np.ndarray
    pair_inter: np.ndarray

    @property
    def pair_union(self) -> np.ndarray:
        """Union (pixels) of each overlapping pair."""
        return self.true_area[self.pair_true] + self.pred_area[self.pair_pred] - self.pair_inter

    @property
    def pair_iou(self) -> np.ndarray:
        """Intersection over union of each overlapping pair."""
        return self.pair_inter / self.pair_union


def instance_overlap(true: np.ndarray, pred: np.ndarray) -> InstanceOverlap:
    """Contingency table of two instance label images (same shape, any integer ids, 0 = background).

    Raises:
        DataError: shapes differ or labels are not integers.
    """
    t_arr, p_arr = np.asarray(true), np.asarray(pred)
    if t_arr.shape != p_arr.shape:
        raise DataError(f"true mask shape {t_arr.shape} differs from predicted mask shape {p_arr.shape}; "
                        "resize the prediction to the ground truth first")
    t, nt = _dense_labels(t_arr, "true")
    p, npred = _dense_labels(p_arr, "pred")
    true_area = np.bincount(t, minlength=nt + 1)[1:].astype(np.float64)
    pred_area = np.bincount(p, minlength=npred + 1)[1:].astype(np.float64)
    both = (t > 0) & (p > 0)
    tb, pb = t[both] - 1, p[both] - 1
    if nt * npred <= _DENSE_LIMIT:
        table = np.bincount(tb * npred + pb, minlength=nt * npred) if nt and npred else np.zeros(0, np.int64)
        keys = np.flatnonzero(table)
        inter = table[keys]
    else:
        keys, inter = np.unique(tb * npred + pb, return_counts=True)
    pt, pp = (np.divmod(keys, npred) if npred else (keys, keys))
    return InstanceOverlap(true_area, pred_area, pt.astype(np.int64), pp.astype(np.int64),
                           inter.astype(np.float64))


def _empty_value(ov: InstanceOverlap) -> float | None:
    nt, npred = len(ov.true_area), len(ov.pred_area)
    if nt == 0 and npred == 0:
        return 1.0
    if nt == 0 or npred == 0:
        return 0.0
    return None


def _assign(ov: InstanceOverlap, weight: np.ndarray) -> np.ndarray:
    """Indices (into the pair arrays) of a one-to-one matching maximising the summed ``weight``.

    Solved per connected component of the overlap graph (pairs that share no pixel have weight 0
    and never change the optimum), so the cost stays small on images with thousands of nuclei.
    """
    nt, npred = len(ov.true_area), len(ov.pred_area)
    if len(weight) == 0:
        return np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(len(weight)), (ov.pair_true, nt + ov.pair_pred)), shape=(nt + npred,) * 2)
    _, comp = connected_components(graph, directed=False)
    pair_comp = comp[ov.pair_true]
    order = np.argsort(pair_comp, kind="stable")
    bounds = np.flatnonzero(np.diff(pair_comp[order])) + 1
    chosen: list[np.ndarray] = []
    for sel in np.split(order, bounds):
        if len(sel) == 1:
            chosen.append(sel)
            continue
        rows, r_inv = np.unique(ov.pair_true[sel], return_inverse=True)
        cols, c_inv = np.unique(ov.pair_pred[sel], return_inverse=True)
        mat = np.zeros((len(rows), len(cols)))
        mat[r_inv, c_inv] = weight[sel]
        lut = np.full((len(rows), len(cols)), -1, np.int64)
        lut[r_inv, c_inv] = sel
        r, c = linear_sum_assignment(-mat)
        picked = lut[r, c]
        chosen.append(picked[picked >= 0])
    return np.concatenate(chosen)


def panoptic_quality(true: np.ndarray, pred: np.ndarray, match_iou: float = 0.5) -> tuple[float, float, float]:
    """Detection quality, segmentation quality and panoptic quality ``(dq, sq, pq)``.

    A true and a predicted instance match when their IoU is strictly above ``match_iou``
    (unique by construction for ``match_iou >= 0.5``; below it an optimal one-to-one assignment is
    used). ``dq = TP / (TP + FP/2 + FN/2)``, ``sq`` = mean IoU of matched pairs (0 when none),
    ``pq = dq * sq``.

    Args:
        true: ground-truth instance labels (0 = background, any other integer = one instance).
        pred: predicted instance labels, same shape.
        match_iou: IoU threshold of a match, in [0, 1).
    """
    if not 0.0 <= match_iou < 1.0:
        raise DataError(f"match_iou must be in [0, 1), got {match_iou}")
    return _pq(instance_overlap(true, pred), match_iou)


def _pq(ov: InstanceOverlap, match_iou: float) -> tuple[float, float, float]:
    empty = _empty_value(ov)
    if empty is not None:
        return empty, empty, empty
    iou = ov.pair_iou
    if match_iou >= 0.5:
        hit = np.flatnonzero(iou > match_iou)
    else:
        hit = _assign(ov, iou)
        hit = hit[iou[hit] > match_iou]
    tp = len(hit)
    fp = len(ov.pred_area) - tp
    fn = len(ov.true_area) - tp
    dq = tp / (tp + 0.5 * fp + 0.5 * fn)
    sq = float(iou[hit].sum() / tp) if tp else 0.0
    return float(dq), sq, float(dq * sq)


def _aji_from_pairs(ov: InstanceOverlap, sel: np.ndarray) -> float:
    """AJI given the chosen (true, pred) pairs; unmatched instances add their area to the union."""
    inter = ov.pair_inter[sel].sum()
    union = ov.pair_union[sel].sum()
    t_used = np.zeros(len(ov.true_area), bool)
    p_used = np.zeros(len(ov.pred_area), bool)
    t_used[ov.pair_true[sel]] = True
    p_used[ov.pair_pred[sel]] = True
    union += ov.true_area[~t_used].sum() + ov.pred_area[~p_used].sum()
    return float(inter / union) if union > 0 else 1.0


def aggregated_jaccard_index(true: np.ndarray, pred: np.ndarray) -> float:
    """Aggregated Jaccard Index (Kumar et al. 2017).

    Each true instance is paired with the predicted instance of highest IoU (ties: smallest id);
    a predicted instance may serve several true ones, and predictions paired with none add their
    area to the union. ``AJI = Σ|G∩S| / (Σ|G∪S| + Σ unpaired areas)``.
    """
    return _aji(instance_overlap(true, pred))


def _aji(ov: InstanceOverlap) -> float:
    empty = _empty_value(ov)
    if empty is not None:
        return empty
    iou = ov.pair_iou
    # per true instance: highest IoU first, then smallest predicted index
    order = np.lexsort((ov.pair_pred, -iou, ov.pair_true))
    first = np.ones(len(order), bool)
    first[1:] = ov.pair_true[order][1:] != ov.pair_true[order][:-1]
    return _aji_from_pairs(ov, order[first])


def aggregated_jaccard_index_plus(true: np.ndarray, pred: np.ndarray) -> float:
    """AJI+ (Graham et al. 2019): like AJI but with a one-to-one matching maximising summed IoU,
    so a prediction that overlaps several nuclei is not counted twice."""
    return _aji_plus(instance_overlap(true, pred))


def _aji_plus(ov: InstanceOverlap) -> float:
    empty = _empty_value(ov)
    if empty is not None:
        return empty
    return _aji_from_pairs(ov, _assign(ov, ov.pair_iou))


def instance_metrics(true: np.ndarray, pred: np.ndarray, match_iou: float = 0.5) -> dict[str, float]:
    """PQ (with DQ and SQ), AJI, AJI+ and instance counts of one image pair, in one dict."""
    if not 0.0 <= match_iou < 1.0:
        raise DataError(f"match_iou must be in [0, 1), got {match_iou}")
    ov = instance_overlap(true, pred)
    dq, sq, pq = _pq(ov, match_iou)
    return {
        "aji": _aji(ov),
        "aji_plus": _aji_plus(ov),
        "dq": dq, "sq": sq, "pq": pq,
        "n_true": len(ov.true_area), "n_pred": len(ov.pred_area),
    }
