"""Leakage and data-quality audit of a split: the check the published pipelines never ran.

What it finds, file by file:

- **group overlap**: a patient/slide (or, with ``group_pattern``, a source image named in the
  file names) whose items sit in more than one split;
- **exact duplicates**: byte-identical files (SHA-256 of the file, or of the pixel array for PCam);
- **near duplicates**: the same picture flipped, rotated by 90°, transposed, cropped (down to
  ~85 % of its side), rescaled, re-encoded, recoloured or converted to greyscale. Fingerprints
  from :mod:`medattn.data.fingerprint` (63-bit DCT-sign hashes of a 32×32 z-scored grey
  thumbnail in all 8 orientations, and of 85 % crop windows across splits) propose candidates
  within :data:`MAX_HASH_BITS` bits; a candidate is a copy when, in the orientation/crop the
  hash found, the smoothed thumbnails correlate at ≥ :data:`MIN_CORRELATION` = 0.95 **and**
  their fine detail (band-pass) at ≥ :data:`MIN_DETAIL_CORRELATION` = 0.9. The detail test is
  the rule that keeps different patients' look-alike chest X-rays apart: on the clean NIH and
  IDC splits of ``../shared/data`` the largest cross-split detail correlation among pairs that
  pass the first test is 0.86. Pairs that pass the first test only are listed as ``similar``
  (not leakage). Near-flat images (thumbnail std < 2 grey levels) carry no pattern to compare
  and are only counted (``low_information``); exact copies of them are still caught;
- duplicates *within* a split (reported, not leakage); class balance per split;
- a warning when every file is its own group although the file names look like
  ``<source>-<...>`` (Herlev cells cut from one slide image): crops of one source image may
  then sit on both sides; pass ``group_pattern`` (``--group-pattern``);
- unreadable, truncated, zero-byte and missing files, and input modes that need conversion.

Leakage = group overlap or any duplicate (exact or near) across splits. ``medattn audit
--strict`` exits with 1 when there is leakage.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from medattn.data import fingerprint as F
from medattn.data.images import check_image

__all__ = ["audit", "fingerprints", "near_duplicate_pairs", "source_name_warning", "MAX_HASH_BITS",
           "MIN_CORRELATION", "MIN_DETAIL_CORRELATION", "REASON"]

MAX_HASH_BITS = 12
"""Hamming radius of the candidate search (63-bit hashes, best of 8 orientations)."""
MIN_CORRELATION = 0.95
MIN_DETAIL_CORRELATION = 0.9
REASON = "near-identical image (flip/rotation/crop/rescale/colour-invariant fingerprint)"
"""The reason every near-duplicate record gives, whatever transform relates the two files."""
_FLAT_STD = 2.0


def _fingerprint_array(arr: np.ndarray) -> tuple[np.ndarray, float]:
    base = F.base_thumbnail(arr)
    return base, float(F.resize_area(base, F.THUMB).std())


def _fingerprint_file(path: Path) -> dict[str, Any]:
    from medattn.data.images import read_image

    info = check_image(path)
    out: dict[str, Any] = {"problem": info["problem"], "mode": info["mode"], "sha": None, "base": None, "std": 0.0}
    if not info["ok"]:
        return out
    out["sha"] = hashlib.sha256(path.read_bytes()).hexdigest()
    out["base"], out["std"] = _fingerprint_array(read_image(path))
    return out


def fingerprints(root: str | Path, files: list[str], workers: int = 2) -> list[dict[str, Any]]:
    """SHA-256, 64×64 grey base thumbnail, its std and the health of each item (``<x.h5>#<i>`` for PCam)."""
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
                b, sd = _fingerprint_array(arr)
                out[i] = {"problem": None, "mode": "RGB", "sha": hashlib.sha256(arr.tobytes()).hexdigest(),
                          "base": b, "std": sd}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for i, fp in zip(plain, pool.map(lambda k: _fingerprint_file(base / files[k]), plain), strict=True):
            out[i] = fp
    return out  # type: ignore[return-value]


def near_duplicate_pairs(bases: np.ndarray, splits: np.ndarray | None = None,
                         ) -> list[tuple[int, int, str, int, float, float]]:
    """Verified candidate pairs ``(a, b, match, hash bits, corr, detail)`` among base thumbnails.

    ``match`` names how the hash search related them (an orientation of :data:`F.DIHEDRAL`, or
    ``crop+<orientation>`` for a crop-window match, searched across ``splits`` only). Every
    pair with ``corr`` ≥ :data:`MIN_CORRELATION` is returned; the caller applies the detail test.
    """
    out = []
    for cand in F.near_candidates(bases, splits, max_bits=MAX_HASH_BITS, max_window_bits=MAX_HASH_BITS):
        c, d = F.verify(bases, cand)
        if c >= MIN_CORRELATION:
            a, b, g, window, bits = cand
            match = F.DIHEDRAL[g] if window is None else f"crop+{F.DIHEDRAL[g]}"
            out.append((min(a, b), max(a, b), match, int(bits), c, d))
    return sorted(out)


_SOURCE_NAME = re.compile(r"^([A-Za-z0-9]+)-.")


def source_name_warning(files: list[str], groups: np.ndarray) -> str | None:
    """A warning when every file is its own group but names look like ``<source>-<...>`` with
    sources shared by several files (Herlev: ``149146635-149146651-002.jpeg``), else ``None``."""
    if len(files) < 2 or len(set(groups.tolist())) < len(files):
        return None
    heads = [m.group(1) for f in files if (m := _SOURCE_NAME.match(Path(f).name))]
    shared = [h for h, n in Counter(heads).items() if n > 1]
    if len(heads) < 0.5 * len(files) or not shared:
        return None
    pattern = r"^(\d+)-" if all(h.isdigit() for h in heads) else r"^([^-]+)-"
    n_shared = sum(n for n in Counter(heads).values() if n > 1)
    return (f"every file is its own group, but {len(heads)} of {len(files)} file names look like "
            f"'<source>-...' and {n_shared} share a source prefix with another file (e.g. "
            f"{Path(files[0]).name}): crops of one source image can sit on both sides of the split; "
            f"give the source with --group-pattern '{pattern}' (recipe: data.options.group_pattern)")


def _pattern_groups(files: list[str], groups: np.ndarray, pattern: str) -> np.ndarray:
    """Groups from ``pattern`` searched in each file name (first capture group, or the whole
    match), as ``medattn split --group-pattern`` makes them; unmatched files keep their group."""
    from medattn.errors import ConfigError

    try:
        rx = re.compile(pattern)
    except re.error as e:
        raise ConfigError(f"--group-pattern {pattern!r} is not a valid regular expression: {e}") from None
    out = groups.copy()
    for k, f in enumerate(files):
        if m := rx.search(Path(f).name):
            out[k] = m.group(1) if rx.groups else m.group(0)
    return out


def audit(root: str | Path, split_table: Any, *, workers: int = 2, group_pattern: str | None = None) -> dict[str, Any]:
    """Audit ``split_table`` (``file, split, group, label``) of the data under ``root``.

    Args:
        root: the data folder (or HDF5 file / manifest) the table's files are relative to.
        split_table: the table to audit; without ``group`` every file is its own group.
        workers: reader threads.
        group_pattern: regular expression naming the group (patient, source image) in each file
            name; replaces the table's groups for the files it matches.

    Returns:
        A JSON-ready dict: per-split counts, ``group_overlap``, ``exact_duplicates``,
        ``near_duplicates`` (each with ``reason``, the ``match`` the fingerprints found, hash
        bits and both correlations), ``bad_files``, ``modes``, ``warnings``, ``leakage`` counts,
        ``leaking_files`` (every file that has a copy or a group in another split) and ``passed``.
    """
    t = split_table.reset_index(drop=True)
    files = t["file"].astype(str).tolist()
    split = t["split"].astype(object).where(t["split"].notna(), "unsplit").astype(str).to_numpy() \
        if "split" in t.columns else np.full(len(t), "unsplit", dtype=object)
    groups = t["group"].astype(str).to_numpy(object) if "group" in t.columns else np.asarray(files, dtype=object)
    labels = t["label"].astype(str).to_numpy() if "label" in t.columns else np.full(len(t), "", dtype=object)
    warnings = []
    if group_pattern is not None:
        groups = _pattern_groups(files, groups, group_pattern)
    elif (w := source_name_warning(files, groups)) is not None:
        warnings.append(w)
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

    ok = [i for i, fp in enumerate(fps) if fp["base"] is not None and fp["std"] >= _FLAT_STD]
    near, similar = [], []
    if len(ok) > 1:
        bases = np.stack([fps[i]["base"] for i in ok])
        for a, b, match, bits, c, cd in near_duplicate_pairs(bases, split[ok]):
            i, j = ok[a], ok[b]
            if frozenset((i, j)) in exact_pairs:
                continue
            rec = {"file_a": files[i], "split_a": split[i], "file_b": files[j], "split_b": split[j],
                   "reason": REASON, "match": match, "hash_bits": bits, "correlation": round(c, 4),
                   "detail_correlation": round(cd, 4), "cross_split": bool(split[i] != split[j])}
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
    return {
        "data": str(root),
        "n_items": len(files),
        "group_pattern": group_pattern,
        "thresholds": {"fingerprint": "63-bit DCT sign, 8 orientations + 85% crop windows",
                       "max_hash_bits": MAX_HASH_BITS, "min_correlation": MIN_CORRELATION,
                       "min_detail_correlation": MIN_DETAIL_CORRELATION, "thumbnail": F.THUMB,
                       "crop_window": F.WINDOW, "flat_std": _FLAT_STD},
        "splits": per_split,
        "warnings": warnings,
        "group_overlap": overlap,
        "exact_duplicates": exact,
        "near_duplicates": near,
        "similar_across_splits": [e for e in similar if e["cross_split"]],
        "within_split_duplicates": sum(not e["cross_split"] for e in exact) + sum(not e["cross_split"] for e in near),
        "bad_files": bad,
        "modes": dict(modes),
        "wrong_mode": int(sum(fp["problem"] == "wrong-mode" for fp in fps)),
        "low_information": int(sum(fp["base"] is not None and fp["std"] < _FLAT_STD for fp in fps)),
        "leakage": leakage,
        "leaking_files": sorted(leaking),
        "has_splits": len(per_split) > 1,
        "passed": not any(leakage.values()),
    }
