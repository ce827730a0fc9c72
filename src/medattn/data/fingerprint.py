"""Orientation-, scale- and colour-robust image fingerprints for the leakage audit.

An offline-augmented dataset leaks through copies that are not byte-identical: a flipped or
rotated patch, a slightly cropped or rescaled one, a recoloured or greyscale one. Every image is
reduced to a **32×32 grey thumbnail** (luminance, area-averaged, z-scored: brightness, contrast,
size and greyscale conversion drop out) and two searches run on it:

1. **candidates** by a 63-bit perceptual hash: the signs of the 8×8 lowest 2-D DCT coefficients
   of the thumbnail (DC left out). A flip or a 90° rotation of the image only flips signs of
   odd-frequency coefficients and/or transposes the block, so the hashes of all 8 dihedral
   versions of an image come from one DCT. Pairs whose hashes differ in at most
   ``max_bits`` bits under some dihedral transform are candidates; the search is a blockwise,
   vectorised Hamming comparison (``np.bitwise_count``) of N×8 variant hashes against N hashes.
2. **verification** of each candidate in the transform the hash search found: the best Pearson
   correlation of the two thumbnails over small crops/rescales (one thumbnail shrunk to 100, 92,
   85 or 78 % and slid over the other), both on the thumbnails (``corr``) and on their fine
   detail (thumbnail minus its Gaussian blur, σ = 1 px, ``detail``). Chest X-rays of different
   patients look alike at low resolution (their ``corr`` can exceed 0.9) but their fine detail
   does not; copies keep both.

:func:`near_duplicates` returns every verified pair with its transform, correlation and detail
correlation; :mod:`medattn.data.audit` applies the thresholds.
"""

from __future__ import annotations

import numpy as np

__all__ = ["THUMB", "WINDOW", "DIHEDRAL", "base_thumbnail", "thumbnail", "thumbs_of", "dihedral_hashes",
           "window_hashes", "candidate_pairs", "verify_pair", "apply_dihedral", "resize_area", "grey", "zscore"]

THUMB = 32
"""Side of the grey thumbnail every comparison works on."""
_DCT = 8
DIHEDRAL = ("identity", "flip_lr", "flip_ud", "rot180", "transpose", "rot90_cw", "rot90_ccw", "anti_transpose")
"""The 8 orientations, in the order of :func:`dihedral_hashes`' columns (see :func:`apply_dihedral`)."""


def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` area-averaging resampler (exactly mirror-symmetric, unlike PIL's)."""
    edges = np.linspace(0.0, n_in, n_out + 1)
    k = np.arange(n_in)
    lo = np.maximum(edges[:-1, None], k[None, :])
    hi = np.minimum(edges[1:, None], k[None, :] + 1)
    w = np.clip(hi - lo, 0.0, None)
    return (w / w.sum(1, keepdims=True)).astype(np.float32)


def resize_area(img: np.ndarray, rows: int, cols: int | None = None) -> np.ndarray:
    """Area-average ``img`` (``H×W``) to ``rows×cols`` (upsampling repeats pixels)."""
    cols = rows if cols is None else cols
    return _area_matrix(img.shape[0], rows) @ img.astype(np.float32) @ _area_matrix(img.shape[1], cols).T


def grey(arr: np.ndarray) -> np.ndarray:
    """Luminance (ITU-R 601) of an ``H×W×C`` image as float32; ``H×W`` images unchanged."""
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[-1] >= 3:
        a = a[..., :3].astype(np.float32)
        return a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114
    return (a[..., 0] if a.ndim == 3 else a).astype(np.float32)


def zscore(t: np.ndarray) -> np.ndarray:
    """``(t - mean) / std`` over the last two axes."""
    m = t.mean((-2, -1), keepdims=True)
    sd = t.std((-2, -1), keepdims=True)
    return (t - m) / (sd + 1e-6)


def base_thumbnail(arr: np.ndarray) -> np.ndarray:
    """The ``64×64`` grey (0-255) every fingerprint of an image is made from (uint8)."""
    return np.clip(resize_area(grey(arr), 2 * THUMB) + 0.5, 0, 255).astype(np.uint8)


def thumbnail(arr: np.ndarray, size: int = THUMB) -> tuple[np.ndarray, float]:
    """Z-scored ``size×size`` grey thumbnail of an ``H×W`` or ``H×W×C`` image, and the grey
    standard deviation of the unnormalised thumbnail (near 0: a flat image)."""
    t = resize_area(grey(arr), size)
    return zscore(t), float(t.std())


def apply_dihedral(img: np.ndarray, g: int) -> np.ndarray:
    """Orientation ``g`` (index into :data:`DIHEDRAL`) of the last two axes of ``img``."""
    x = np.swapaxes(img, -1, -2) if g >= 4 else img
    a, b = [(0, 0), (0, 1), (1, 0), (1, 1)][g % 4]
    if a:
        x = x[..., ::-1, :]
    if b:
        x = x[..., :, ::-1]
    return x


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)
    m = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m.astype(np.float32)


def dihedral_hashes(thumbs: np.ndarray) -> np.ndarray:
    """``(N, 8)`` uint64: the 63-bit DCT-sign hash of each orientation of each thumbnail.

    Column ``g`` is the hash of ``apply_dihedral(thumb, g)``, computed from the thumbnail's own
    DCT: a left-right flip negates the odd horizontal frequencies, an up-down flip the odd
    vertical ones, a transpose transposes the coefficient block.
    """
    t = np.asarray(thumbs, np.float32)
    d = _dct_matrix(t.shape[-1])[:_DCT]
    c = d @ t @ d.T  # (N, 8, 8) lowest frequencies
    odd = (np.arange(_DCT) % 2).astype(bool)
    weights = (np.uint64(1) << np.arange(_DCT * _DCT - 1, dtype=np.uint64))
    out = np.empty((len(t), 8), np.uint64)
    for g in range(8):
        b = np.swapaxes(c, 1, 2) if g >= 4 else c
        a, h = [(0, 0), (0, 1), (1, 0), (1, 1)][g % 4]
        sign = np.ones((_DCT, _DCT), np.float32)
        if a:
            sign[odd, :] *= -1
        if h:
            sign[:, odd] *= -1
        bits = (b * sign).reshape(len(t), -1)[:, 1:] > 0
        out[:, g] = (bits.astype(np.uint64) * weights).sum(1, dtype=np.uint64)
    return out


def candidate_pairs(hashes: np.ndarray, max_bits: int, *, block: int = 256,
                    base: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pairs whose hashes differ in at most ``max_bits`` bits for some orientation.

    Args:
        hashes: ``(N, 8)`` orientation hashes (:func:`dihedral_hashes`) of the query images.
        max_bits: Hamming threshold.
        block: query rows compared at once (memory ``block × M`` bytes).
        base: ``(M,)`` hashes to compare against; default the queries' own identity hashes,
            and then only pairs ``i < j`` are returned.

    Returns:
        ``i, j, g, bits``: query index, base index, the orientation of ``i`` that matched best,
        and its Hamming distance.
    """
    h = np.asarray(hashes, np.uint64)
    own = base is None
    b0 = h[:, 0] if own else np.asarray(base, np.uint64)
    m = len(b0)
    out: list[tuple[np.ndarray, np.ndarray]] = []
    xor = np.empty((block, m), np.uint64)
    cnt = np.empty((block, m), np.uint8)
    for s in range(0, len(h), block):
        q = h[s:s + block]
        lo = s if own else 0  # own: the lower triangle is the upper one again
        x, c = xor[: len(q), lo:], cnt[: len(q), lo:]
        best = np.full(c.shape, 255, np.uint8)
        for k in range(8):
            np.bitwise_xor(q[:, k, None], b0[None, lo:], out=x)
            np.bitwise_count(x, out=c)
            np.minimum(best, c, out=best)
        ii, jj = np.nonzero(best <= max_bits)
        jj = jj + lo
        sel = jj > ii + s if own else np.ones(len(ii), bool)
        out.append((ii[sel] + s, jj[sel]))
    i = np.concatenate([o[0] for o in out]) if out else np.zeros(0, np.int64)
    j = np.concatenate([o[1] for o in out]) if out else np.zeros(0, np.int64)
    d = np.bitwise_count(h[i] ^ b0[j][:, None]).astype(np.int64)  # (K, 8)
    g = d.argmin(1) if len(i) else np.zeros(0, np.int64)
    bits = d[np.arange(len(i)), g] if len(i) else np.zeros(0, np.int64)
    return i.astype(np.int64), j.astype(np.int64), g.astype(np.int64), bits


WINDOW = 0.85
"""Side of the crop windows (fraction of the image) whose hashes find cropped copies."""
_N = 2 * THUMB


def _window_pos(f: float, n: int = _N) -> list[tuple[int, int, int]]:
    k = int(round(n * f))
    o, c = n - k, (n - k) // 2
    return [(k, y, x) for y, x in ((c, c), (0, 0), (0, o), (o, 0), (o, o))]


def thumbs_of(bases: np.ndarray) -> np.ndarray:
    """Z-scored 32×32 thumbnails of ``(N, 64, 64)`` base thumbnails."""
    m = _area_matrix(np.asarray(bases).shape[-1], THUMB)
    return zscore(m @ np.asarray(bases, np.float32) @ m.T)


def window_hashes(bases: np.ndarray) -> np.ndarray:
    """``(N, 5)`` identity hashes of the centre and 4 corner windows (side :data:`WINDOW`)."""
    b = np.asarray(bases, np.float32)
    cols = []
    for k, y, x in _window_pos(WINDOW):
        m = _area_matrix(k, THUMB)
        cols.append(dihedral_hashes(zscore(m @ b[:, y:y + k, x:x + k] @ m.T))[:, 0])
    return np.stack(cols, 1)


def _smooth(t: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(t, (0,) * (t.ndim - 2) + (sigma, sigma), mode="nearest")


def _corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation over the last two axes (broadcasting)."""
    a = a - a.mean((-2, -1), keepdims=True)
    b = b - b.mean((-2, -1), keepdims=True)
    num = (a * b).sum((-2, -1))
    return num / (np.sqrt((a * a).sum((-2, -1)) * (b * b).sum((-2, -1))) + 1e-9)


def _band(t: np.ndarray) -> np.ndarray:
    return _smooth(t, 0.7) - _smooth(t, 2.0)


def verify_pair(base_a: np.ndarray, base_b: np.ndarray, g: int,
                window: tuple[int, int, int] | None = None) -> tuple[float, float]:
    """``(corr, detail)`` of image ``b`` against image ``a`` in orientation ``g`` (64×64 bases).

    Without ``window`` the whole images are compared; with ``window = (side, top, left)`` (on
    the 64 grid of ``a`` after orientation) ``b`` is compared with that crop of ``a`` and with
    the crops 6 % smaller and larger around the same centre (the best is kept). ``corr`` correlates the
    lightly smoothed (σ = 1 px) 32×32 thumbnails, ``detail`` their band-pass (σ 0.7 minus σ 2).
    """
    a = apply_dihedral(np.asarray(base_a, np.float32), g)
    tb = thumbs_of(np.asarray(base_b, np.float32)[None])
    if window is None:
        ta = thumbs_of(a[None])
    else:
        k0, y0, x0 = window
        crops = []
        for k in {max(16, min(_N, int(round(k0 * s)))) for s in (0.94, 1.0, 1.06)}:
            y = min(max(0, y0 + (k0 - k) // 2), _N - k)
            x = min(max(0, x0 + (k0 - k) // 2), _N - k)
            m = _area_matrix(k, THUMB)
            crops.append(m @ a[y:y + k, x:x + k] @ m.T)
        ta = zscore(np.stack(crops))
    r = _corr(_smooth(ta, 1.0), _smooth(tb, 1.0))
    best = int(r.argmax())
    return float(r[best]), float(_corr(_band(ta[best]), _band(tb[0])))


def near_candidates(bases: np.ndarray, splits: np.ndarray | None = None, *, max_bits: int = 12,
                    max_window_bits: int = 12) -> list[tuple[int, int, int, tuple[int, int, int] | None, int]]:
    """Candidate copies among ``(N, 64, 64)`` base thumbnails.

    Whole-image hashes are compared between all items (in all 8 orientations); the crop-window
    hashes only across different ``splits`` (the leakage that matters), in both directions.

    Returns:
        ``(a, b, g, window, bits)``: verify with ``verify_pair(bases[a], apply_dihedral(bases[b], gb), ga, window)``
        where for whole-image matches ``window`` is ``None`` and ``g`` orients ``a``; for window
        matches ``g`` orients ``b`` and ``window`` is the crop of ``a`` it matched.
    """
    bases = np.asarray(bases)
    h = dihedral_hashes(thumbs_of(bases))
    out: dict[tuple[int, int], tuple[int, int, int, tuple[int, int, int] | None, int]] = {}
    for i, j, g, b in zip(*(x.tolist() for x in candidate_pairs(h, max_bits)), strict=True):
        out[(i, j)] = (i, j, g, None, b)
    if splits is not None and len(set(np.asarray(splits).tolist())) > 1:
        sp = np.asarray(splits)
        wh = window_hashes(bases)
        pos = _window_pos(WINDOW)
        for s in dict.fromkeys(sp.tolist()):
            q, o = np.nonzero(sp == s)[0], np.nonzero(sp != s)[0]
            ii, jj, gg, bb = candidate_pairs(h[q], max_window_bits, base=wh[o].ravel())
            for i, j, g, b in zip(ii.tolist(), jj.tolist(), gg.tolist(), bb.tolist(), strict=True):
                a, c = int(o[j // len(pos)]), int(q[i])
                key = (min(a, c), max(a, c))
                if key not in out or out[key][3] is None and out[key][4] > b:
                    out[key] = (a, c, g, pos[j % len(pos)], b)
    return list(out.values())


def verify(bases: np.ndarray, cand: tuple[int, int, int, tuple[int, int, int] | None, int]) -> tuple[float, float]:
    """:func:`verify_pair` of one :func:`near_candidates` entry."""
    a, b, g, window, _ = cand
    if window is None:
        return verify_pair(bases[a], bases[b], g)
    return verify_pair(bases[a], apply_dihedral(np.asarray(bases[b]), g), 0, window)
