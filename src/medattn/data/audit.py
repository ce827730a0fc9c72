"""Leakage and data-quality audit of a split: the check the published pipelines never ran.

What it finds, file by file:

- **group overlap**: a patient/slide whose items sit in more than one split;
- **exact duplicates**: byte-identical files (SHA-256 of the file, or of the pixel array for PCam);
- **near duplicates**: the same picture re-encoded (JPEG), resized or lightly recompressed. Two
  items are near duplicates when three tests pass: their 64-bit perceptual hashes
  (``imagehash.phash``) differ in at most :data:`MAX_HAMMING` = 8 bits, their 16×16 grey
  thumbnails correlate at ≥ :data:`MIN_CORRELATION` = 0.95, and the fine detail of their 32×32
  thumbnails (thumbnail minus its Gaussian blur, σ = 2 px) correlates at ≥
  :data:`MIN_DETAIL_CORRELATION` = 0.85. Measured on ``../shared/data`` (IDC, Herlev, NIH 64 px):
  JPEG q=60 re-encodes and 0.8×/1.5×/96 px resizes differ by ≤ 6 bits, thumbnail correlation
  ≥ 0.976, detail correlation ≥ 0.90; different chest X-rays of different patients can pass the
  first two tests (CXRs all look alike at 16 px) but reach detail correlation 0.74 at most.
  Pairs that pass the first two tests only are listed as ``similar`` (not leakage): e.g. two
  overlapping crops of the same Herlev cell. Near-flat images (thumbnail std < 2 grey levels)
  carry no pattern to compare and are only counted (``low_information``); exact copies of them
  are still caught;
- duplicates *within* a split (reported, not leakage); class balance per split;
- unreadable, truncated, zero-byte and missing files, and input modes that need conversion.

Leakage = group overlap or any duplicate (exact or near) across splits. ``medattn audit
--strict`` exits with 1 when there is leakage.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from medattn.data.images import check_image

__all__ = ["audit", "fingerprints", "near_pairs", "MAX_HAMMING", "MIN_CORRELATION", "MIN_DETAIL_CORRELATION", "THUMB"]

MAX_HAMMING = 8
MIN_CORRELATION = 0.95
MIN_DETAIL_CORRELATION = 0.85
THUMB = 16
_FLAT_STD = 2.0


def _zscore(a: np.ndarray) -> np.ndarray:
    return (a - a.mean()) / (a.std() + 1e-6)


def _thumb(gray: Any) -> tuple[np.ndarray, float]:
    """Concatenated z-scored 16×16 thumbnail and 32×32 detail (high-pass) features, and the std."""
    from PIL import Image
    from scipy.ndimage import gaussian_filter

    t = np.asarray(gray.resize((THUMB, THUMB), Image.BILINEAR), np.float32).ravel()
    g = np.asarray(gray.resize((2 * THUMB, 2 * THUMB), Image.BILINEAR), np.float32)
    detail = (g - gaussian_filter(g, 2.0)).ravel()
    return np.concatenate([_zscore(t), _zscore(detail)]), float(t.std())


def _fingerprint_array(arr: np.ndarray) -> tuple[int, np.ndarray, float]:
    import imagehash
    from PIL import Image

    im = Image.fromarray(arr)
    h = imagehash.phash(im).hash.ravel()
    t, sd = _thumb(im.convert("L"))
    return int.from_bytes(np.packbits(h).tobytes(), "big"), t, sd


def _fingerprint_file(path: Path) -> dict[str, Any]:
    from medattn.data.images import read_image

    info = check_image(path)
    out: dict[str, Any] = {"problem": info["problem"], "mode": info["mode"], "sha": None, "phash": None,
                           "thumb": None, "std": 0.0}
    if not info["ok"]:
        return out
    out["sha"] = hashlib.sha256(path.read_bytes()).hexdigest()
    out["phash"], out["thumb"], out["std"] = _fingerprint_array(read_image(path))
    return out


def fingerprints(root: str | Path, files: list[str], workers: int = 2) -> list[dict[str, Any]]:
    """SHA-256, perceptual hash, thumbnail and health of each item (``<x.h5>#<i>`` for PCam)."""
    r = Path(root)
    base = r.parent if r.is_file() else r
    out: list[dict[str, Any] | None] = [None] * len(files)
    h5_items: dict[str, list[tuple[int, int]]] = defaultdict(list)
    plain: list[int] = []
    for i, f in enumerate(files):
        if "#" in f and f.split("#")[0].endswith(".h5"):
            name, idx = f.rsplit("#", 1)
            h5_items[name].append((i, int(idx)))
        else:
            plain.append(i)
    for name, items in h5_items.items():
        import h5py

        with h5py.File(base / name, "r") as fh:
            ds = fh["x"] if "x" in fh else fh[next(iter(fh.keys()))]
            for i, j in items:
                arr = np.asarray(ds[j])
                ph, t, sd = _fingerprint_array(arr)
                out[i] = {"problem": None, "mode": "RGB", "sha": hashlib.sha256(arr.tobytes()).hexdigest(),
                          "phash": ph, "thumb": t, "std": sd}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for i, fp in zip(plain, pool.map(lambda k: _fingerprint_file(base / files[k]), plain), strict=True):
            out[i] = fp
    return out  # type: ignore[return-value]


def near_pairs(hashes: np.ndarray, thumbs: np.ndarray, max_hamming: int = MAX_HAMMING,
               min_corr: float = MIN_CORRELATION, block: int = 1024) -> list[tuple[int, int, int, float, float]]:
    """Pairs ``(i, j, hamming, thumbnail corr, detail corr)``, ``i < j``, passing the hash and
    thumbnail tests (the caller applies the detail threshold).

    Brute force over 64-bit hashes in blocks (``np.bitwise_count``): ~1 s per 10⁸ pairs.
    """
    n = len(hashes)
    k = THUMB * THUMB
    out: list[tuple[int, int, int, float, float]] = []
    h = hashes.astype(np.uint64)
    for s in range(0, n, block):
        d = np.bitwise_count(h[s:s + block, None] ^ h[None, :])
        ii, jj = np.nonzero(d <= max_hamming)
        ii = ii + s
        keep = jj > ii
        for i, j in zip(ii[keep], jj[keep], strict=True):
            c = float(thumbs[i, :k] @ thumbs[j, :k]) / k
            if c >= min_corr:
                cd = float(thumbs[i, k:] @ thumbs[j, k:]) / (thumbs.shape[1] - k)
                out.append((int(i), int(j), int(d[i - s, j]), c, cd))
    return out


def audit(root: str | Path, split_table: Any, *, workers: int = 2) -> dict[str, Any]:
    """Audit ``split_table`` (``file, split, group, label``) of the data under ``root``.

    Returns:
        A JSON-ready dict: per-split counts, ``group_overlap``, ``exact_duplicates``,
        ``near_duplicates``, ``bad_files``, ``modes``, ``leakage`` counts, ``leaking_files``
        (every file that has a copy or a patient in another split) and ``passed``.
    """
    t = split_table.reset_index(drop=True)
    files = t["file"].astype(str).tolist()
    split = t["split"].astype(object).where(t["split"].notna(), "unsplit").astype(str).to_numpy() \
        if "split" in t.columns else np.full(len(t), "unsplit", dtype=object)
    groups = t["group"].astype(str).to_numpy() if "group" in t.columns else np.asarray(files, dtype=object)
    labels = t["label"].astype(str).to_numpy() if "label" in t.columns else np.full(len(t), "", dtype=object)
    fps = fingerprints(root, files, workers=workers)

    per_split: dict[str, Any] = {}
    for s in dict.fromkeys(split):
        m = split == s
        per_split[s] = {"items": int(m.sum()), "groups": int(len(set(groups[m]))),
                        "classes": dict(sorted(Counter(labels[m].tolist()).items()))}

    by_group: dict[str, set[str]] = defaultdict(set)
    for g, s in zip(groups, split, strict=True):
        by_group[g].add(s)
    overlap = [{"group": g, "splits": sorted(ss), "items": int((groups == g).sum())}
               for g, ss in sorted(by_group.items()) if len(ss) > 1]

    by_sha: dict[str, list[int]] = defaultdict(list)
    for i, fp in enumerate(fps):
        if fp["sha"] is not None:
            by_sha[fp["sha"]].append(i)
    exact = []
    for idx in by_sha.values():
        if len(idx) > 1:
            exact.append({"files": [files[i] for i in idx], "splits": [split[i] for i in idx],
                          "cross_split": len({split[i] for i in idx}) > 1})
    exact_pairs = {frozenset((a, b)) for idx in by_sha.values() for a in idx for b in idx if a < b}

    ok = [i for i, fp in enumerate(fps) if fp["phash"] is not None and fp["std"] >= _FLAT_STD]
    near, similar = [], []
    if len(ok) > 1:
        hashes = np.array([fps[i]["phash"] for i in ok], dtype=np.uint64)
        thumbs = np.stack([fps[i]["thumb"] for i in ok])
        for a, b, d, c, cd in near_pairs(hashes, thumbs):
            i, j = ok[a], ok[b]
            if frozenset((i, j)) in exact_pairs:
                continue
            rec = {"file_a": files[i], "split_a": split[i], "file_b": files[j], "split_b": split[j],
                   "hamming": d, "correlation": round(c, 4), "detail_correlation": round(cd, 4),
                   "cross_split": bool(split[i] != split[j])}
            (near if cd >= MIN_DETAIL_CORRELATION else similar).append(rec)

    bad = [{"file": files[i], "problem": fp["problem"]} for i, fp in enumerate(fps)
           if fp["problem"] not in (None, "wrong-mode")]
    modes = Counter(str(fp["mode"]) for fp in fps if fp["mode"] is not None)
    leaking: set[str] = set()
    for e in exact:
        if e["cross_split"]:
            leaking.update(e["files"])
    for e in near:
        if e["cross_split"]:
            leaking.update((e["file_a"], e["file_b"]))
    overlap_groups = {o["group"] for o in overlap}
    leaking.update(f for f, g in zip(files, groups, strict=True) if g in overlap_groups)
    leakage = {"group_overlap": len(overlap),
               "exact_cross_split": sum(e["cross_split"] for e in exact),
               "near_cross_split": sum(e["cross_split"] for e in near)}
    has_splits = len(per_split) > 1
    return {
        "data": str(root),
        "n_items": len(files),
        "thresholds": {"phash_bits": 64, "max_hamming": MAX_HAMMING, "min_correlation": MIN_CORRELATION,
                       "min_detail_correlation": MIN_DETAIL_CORRELATION, "thumbnail": THUMB, "flat_std": _FLAT_STD},
        "splits": per_split,
        "group_overlap": overlap,
        "exact_duplicates": exact,
        "near_duplicates": near,
        "similar_across_splits": [e for e in similar if e["cross_split"]],
        "within_split_duplicates": sum(not e["cross_split"] for e in exact) + sum(not e["cross_split"] for e in near),
        "bad_files": bad,
        "modes": dict(modes),
        "wrong_mode": int(sum(fp["problem"] == "wrong-mode" for fp in fps)),
        "low_information": int(sum(fp["phash"] is not None and fp["std"] < _FLAT_STD for fp in fps)),
        "leakage": leakage,
        "leaking_files": sorted(leaking),
        "has_splits": has_splits,
        "passed": not any(leakage.values()),
    }
