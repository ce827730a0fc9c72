"""Feature-space out-of-distribution score: class-conditional Gaussians at several depths of the
network and on the input's own statistics, combined into one score with one threshold.

Components (each a "layer" of the stored model):

- every **stage** of the backbone (the last module at each spatial resolution, found by a dry run:
  ``layer1`` … ``layer4`` of a ResNet): the per-channel mean and standard deviation over space;
- the **head**: the input of the model's last linear layer (the penultimate features);
- the **input**: per-channel mean and spread of the prepared image, the energy of its darkness image
  at nine blob scales (a normalised Laplacian-of-Gaussian profile, 0.7–11 px), its fine-detail share
  and its blob scale (:func:`input_features`), i.e. colour, contrast and object scale as the model
  sees them. The profile is what tells a 50 px crop of a 40× tile (a few nuclei, energy rising
  towards 8 px) from a 2.5× patch (energy falling from the finest scale); one summary number
  each, as older bundles stored, overlap.

Each component is a Gaussian with one mean per class and a shared (tied) covariance, as in Lee et
al. 2018 ("Mahalanobis"), stored as a probabilistic-PCA covariance: its top ``rank`` eigenvectors
and eigenvalues plus one variance for the other directions, so a component's score is

``min_k  sum_i (v_i . (f - mu_k))^2 / lambda_i  +  |residual|^2 / sigma^2``.

Early stages see texture, colour and scale (an X-ray, a 40× tile sent to a 2.5× model), the head
sees semantics; neither alone catches both. A component's score is standardised by the median and
spread of its scores on validation items, and the image's score is the largest standardised score
over components. Fitting (:func:`fit_ood`): the Gaussians on training + validation features; the
standardisation and the threshold on **out-of-fold** validation scores (each half of the validation
items scored by Gaussians fitted without it), so the threshold — the ``quantile`` (default 0.95)
of those scores — flags about 5% of new in-distribution images. Everything is plain numbers in
``bundle.json``; bundles with the older single-layer ``mahalanobis_ppca`` model are still read.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["feature_layer", "stage_layers", "capture_features", "input_features", "fit_gaussian", "fit_ood",
           "ood_scores", "component_scores", "component_rank", "DEFAULT_RANK", "DEFAULT_QUANTILE", "HEAD", "INPUT", "MAX_STAGES"]

DEFAULT_RANK = 32
DEFAULT_QUANTILE = 0.95
MAX_STAGES = 4
HEAD = "head"
"""Component name of the input of the last linear layer."""
INPUT = "input"
"""Component name of the input statistics."""
_SIG = 4  # significant digits stored
_LOG_SIGMAS = (0.7, 1.0, 1.4, 2.0, 2.8, 4.0, 5.6)  # the blob-scale average (``object_scale`` records it)
_PROFILE_SIGMAS = (*_LOG_SIGMAS, 8.0, 11.3)  # the energy profile of the input component


def feature_layer(model: nn.Module) -> nn.Linear | None:
    """The last ``nn.Linear`` of ``model`` (its input is the penultimate feature vector), or None."""
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m
    return last


@torch.no_grad()
def stage_layers(model: nn.Module, example: torch.Tensor, max_stages: int = MAX_STAGES) -> list[str]:
    """Names of the backbone's stage ends: among modules at most two levels deep with a 4-D output
    larger than 1×1 (global pooling is not a stage), the last to finish at each spatial resolution
    (a dry run on ``example``); the deepest
    ``max_stages`` resolutions are kept, shallowest first."""
    order: list[tuple[str, tuple[int, int]]] = []
    handles = []
    for name, mod in model.named_modules():
        if not name or name.count(".") > 1:
            continue

        def hook(_m: nn.Module, _a: Any, out: Any, name: str = name) -> None:
            if isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[-2] * out.shape[-1] > 1:
                order.append((name, (int(out.shape[-2]), int(out.shape[-1]))))

        handles.append(mod.register_forward_hook(hook))
    was = model.training
    try:
        model.eval()
        model(example[:2])
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    last: dict[tuple[int, int], str] = {}
    seen: list[tuple[int, int]] = []
    for name, res in order:
        if res not in seen:
            seen.append(res)
        last[res] = name
    names = [last[r] for r in seen]
    # a module that runs again later (shared blocks) keeps only its last place
    uniq = [n for i, n in enumerate(names) if n not in names[i + 1:]]
    return uniq[-max_stages:]


def _pool(t: torch.Tensor) -> torch.Tensor:
    """``B×C×H×W`` → ``B×2C`` (mean and standard deviation over space); 2-D inputs pass flattened."""
    t = t.detach().float()
    if t.ndim == 4:
        flat = t.flatten(2)
        return torch.cat([flat.mean(2), flat.std(2, unbiased=False)], 1).cpu()
    return t.flatten(1).cpu()


@contextmanager
def capture_features(model: nn.Module, layers: list[str] | None = None,
                     thread: int | None = None) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Collect pooled features of ``layers`` (stage names and/or :data:`HEAD`; default the head)
    on every forward pass inside the block: ``{name: [B×D tensors]}``.

    Args:
        thread: record only passes run by this thread id (a served model shared by threads).
    """
    import threading

    layers = [HEAD] if layers is None else list(layers)
    store: dict[str, list[torch.Tensor]] = {n: [] for n in layers if n != INPUT}
    handles = []

    def mine() -> bool:
        return thread is None or threading.get_ident() == thread

    for name in store:
        if name == HEAD:
            lin = feature_layer(model)
            if lin is None:
                continue

            def pre(_m: nn.Module, args: tuple[Any, ...]) -> None:
                if mine():
                    store[HEAD].append(_pool(args[0]))

            handles.append(lin.register_forward_pre_hook(pre))
        else:
            mod = model.get_submodule(name)

            def post(_m: nn.Module, _a: Any, out: Any, name: str = name) -> None:
                if mine() and isinstance(out, torch.Tensor):
                    store[name].append(_pool(out))

            handles.append(mod.register_forward_hook(post))
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


def input_features(x: torch.Tensor, mean: Any, std: Any) -> np.ndarray:
    """Statistics of prepared inputs ``B×C×H×W`` as the model sees them (un-normalised by the
    bundle's ``mean``/``std`` to 0..1), ``B×(2C+11)``: per-channel mean and spread; the log energy
    of the darkness image at the 9 scales of a normalised Laplacian-of-Gaussian stack (σ 0.7–11.3
    px); its fine-detail share (spread of its difference from a σ=1 Gaussian blur over its own
    spread: high at low magnification, low for a high-magnification or blurred image); and its blob
    scale (the energy-weighted geometric mean σ over σ 0.7–5.6). The last two columns are what the
    contract's ``object_scale`` records; bundles fitted before the profile existed read the columns
    without it (:func:`component_scores`)."""
    from scipy import ndimage

    a = x.detach().float().cpu()
    c = a.shape[1]
    m = torch.as_tensor(list(mean)[:c] if mean is not None else [0.0] * c, dtype=torch.float32).view(1, c, 1, 1)
    s = torch.as_tensor(list(std)[:c] if std is not None else [1.0] * c, dtype=torch.float32).view(1, c, 1, 1)
    a = (a * s + m).clamp(0, 1).numpy()
    flat = a.reshape(len(a), c, -1)
    out = [flat.mean(2), flat.std(2)]
    lum = a[:, 0] if c == 1 else np.tensordot(np.array([0.299, 0.587, 0.114], np.float32), a[:, :3], axes=(0, 1))
    fine, scale, profile = [], [], []
    sig = np.asarray(_PROFILE_SIGMAS)
    k = len(_LOG_SIGMAS)
    for d in 1.0 - lum:
        sd = float(d.std()) + 1e-6
        fine.append(float((d - ndimage.gaussian_filter(d, 1.0)).std()) / sd)
        e = np.array([s_ ** 2 * np.abs(ndimage.gaussian_laplace(d, s_)).mean() for s_ in sig]) + 1e-12
        profile.append(np.log(e))
        w = e[:k] / e[:k].sum()
        scale.append(float(np.exp((w * np.log(sig[:k])).sum())))
    return np.concatenate([*out, np.asarray(profile), np.asarray(fine)[:, None], np.asarray(scale)[:, None]],
                          1).astype(np.float64)


def _input_columns(feats: np.ndarray, dim: int) -> np.ndarray:
    """Input statistics as a component fitted with ``dim`` columns reads them: a bundle fitted
    before the energy profile existed has ``2C + 2`` (colour and spread, fine detail, blob scale)."""
    f = np.asarray(feats)
    n_profile = len(_PROFILE_SIGMAS)
    if f.ndim == 2 and f.shape[1] == dim + n_profile:
        two_c = dim - 2
        return np.concatenate([f[:, :two_c], f[:, -2:]], 1)
    return f


def _round(a: np.ndarray) -> list[Any]:
    return np.vectorize(lambda v: float(f"{v:.{_SIG}g}"), otypes=[float])(np.asarray(a, np.float64)).tolist()


def fit_gaussian(feats: np.ndarray, labels: np.ndarray | None, val_feats: np.ndarray | None = None, *,
                 rank: int = DEFAULT_RANK, quantile: float = DEFAULT_QUANTILE) -> dict[str, Any]:
    """One class-conditional Gaussian (tied PPCA covariance) fitted on ``feats``.

    Args:
        feats: ``N×D`` features.
        labels: class index per item (None or multilabel: one Gaussian for all).
        val_feats: ``M×D`` validation features; when given the doc also carries ``threshold`` (the
            ``quantile`` of their scores), for a single-component model.
        rank: eigen-directions kept (the rest share one variance).
        quantile: share of validation items below the threshold.
    """
    f = np.asarray(feats, np.float64)
    n, d = f.shape
    lab = np.zeros(n, int) if labels is None or np.asarray(labels).ndim > 1 else np.asarray(labels, int)
    classes = [c for c in np.unique(lab) if (lab == c).sum() >= 2] or [int(lab[0])]
    means = np.stack([f[lab == c].mean(0) for c in classes])
    keep = np.isin(lab, classes)
    centred = f[keep] - means[np.searchsorted(classes, lab[keep])]
    cov = centred.T @ centred / max(1, len(centred) - len(classes))
    evals, evecs = np.linalg.eigh(cov)
    evals, evecs = evals[::-1].clip(min=0), evecs[:, ::-1]
    r = int(min(rank, d - 1 if d > 1 else 1, max(1, len(centred) - 1)))
    floor = max(1e-6 * float(evals[0]) if evals.size else 0.0, 1e-12)
    lam = evals[:r].clip(min=floor)
    # few items (n < D) leave the remaining directions with ~0 variance: shrink towards the kept ones
    sigma2 = max(float(evals[r:].mean()) if d > r else 0.0, 0.01 * float(lam.mean()))
    doc: dict[str, Any] = {
        "method": "mahalanobis_ppca", "dim": int(d), "rank": r,
        "classes": [int(c) for c in classes], "means": _round(means), "eigvecs": _round(evecs[:, :r].T),
        "eigvals": _round(lam), "residual_var": float(f"{max(sigma2, floor):.{_SIG}g}"),
        "fitted_on": f"{n} items",
    }
    if val_feats is not None:
        val = _gaussian_scores(doc, val_feats)
        # no validation items: the training scores set it (a finite number; bundle.json refuses others)
        ref, on = (val, f"valid ({len(val)} items)") if len(val) else (_gaussian_scores(doc, f),
                                                                       f"train ({n} items, no validation)")
        doc["threshold"] = float(np.quantile(ref, quantile))
        doc["threshold_quantile"] = quantile
        doc["threshold_on"] = on
    return doc


def _gaussian_scores(doc: dict[str, Any], feats: np.ndarray) -> np.ndarray:
    f = np.asarray(feats, np.float64)
    if f.ndim != 2 or f.shape[1] != int(doc["dim"]):
        raise ValueError(f"features of shape {f.shape} do not match the stored dimension {doc['dim']}")
    means = np.asarray(doc["means"], np.float64)
    vecs = np.asarray(doc["eigvecs"], np.float64)  # r×D
    lam = np.asarray(doc["eigvals"], np.float64)
    s2 = float(doc["residual_var"])
    best = np.full(len(f), np.inf)
    for mu in means:
        delta = f - mu
        proj = delta @ vecs.T
        resid = (delta ** 2).sum(1) - (proj ** 2).sum(1)
        best = np.minimum(best, (proj ** 2 / lam).sum(1) + resid.clip(min=0) / s2)
    return best


def _components(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The components of a stored model (an older single-layer doc is one head component)."""
    if "components" in doc:
        return list(doc["components"])
    return [{**doc, "layer": HEAD, "center": 0.0, "scale": 1.0}]


def component_scores(doc: dict[str, Any], feats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Standardised score of each component (``(score − center) / scale``) from ``{layer: N×D}``."""
    out = {}
    for c in _components(doc):
        f = feats[c["layer"]]
        if c["layer"] == INPUT:
            f = _input_columns(f, int(c["dim"]))
        out[c["layer"]] = (_gaussian_scores(c, f) - float(c["center"])) / float(c["scale"])
    return out


def ood_scores(doc: dict[str, Any], feats: dict[str, np.ndarray] | np.ndarray) -> np.ndarray:
    """The image score: the largest standardised component score (compare with ``doc["threshold"]``).

    ``feats`` maps each component's layer to ``N×D`` features (a bare array is the head's)."""
    if not isinstance(feats, dict):
        feats = {HEAD: feats}
    per = component_scores(doc, feats)
    return np.max(np.stack(list(per.values())), 0)


def _standardise(scores: np.ndarray) -> tuple[float, float]:
    """Center (median) and scale (spread between the median and the 95th percentile) of in-distribution scores."""
    med = float(np.median(scores))
    hi = float(np.quantile(scores, 0.95))
    return med, max(hi - med, 1e-6 * max(abs(med), 1.0), 1e-12)


def component_rank(dim: int, rank: int = DEFAULT_RANK) -> int:
    """Eigen-directions kept for a component of ``dim`` features: ``rank``, and at most half of
    ``dim``. A narrow component (the 17 input statistics) fitted with a full covariance gives its
    smallest, noisiest directions full weight, and held-out in-distribution items then score with a
    heavy tail that lifts the threshold: on idc-cpu the input component with all 17 directions
    flagged 78% of 50 px crops of 40× tiles, with 8 directions 92%, at the same 5% of validation
    patches (crops of another sample than benchmarks/real/ood_operating_point.py's)."""
    return int(max(1, min(rank, dim // 2)))


def fit_ood(train: dict[str, np.ndarray], labels: np.ndarray | None, valid: dict[str, np.ndarray],
            valid_labels: np.ndarray | None = None, *, valid_groups: Any = None, rank: int = DEFAULT_RANK,
            quantile: float = DEFAULT_QUANTILE, seed: int = 0) -> dict[str, Any]:
    """The multi-component model of the module docstring from ``{layer: N×D}`` features.

    Args:
        train: training features per layer (the network was fitted on these items).
        labels: their class indices (None: one Gaussian per component).
        valid: validation features per layer (items the network never trained on).
        valid_labels: their class indices.
        valid_groups: per validation item, its patient/source group: the two folds keep groups whole.
        rank: eigen-directions kept per component (at most half its features: :func:`component_rank`).
        quantile: share of (out-of-fold) validation items under the threshold.
    """
    layers = list(train)
    nv = len(next(iter(valid.values())))
    if nv < 4:
        raise ValueError(f"{nv} validation items are too few to set an out-of-distribution threshold")
    rng = np.random.default_rng(seed)
    if valid_groups is not None and len(set(valid_groups)) >= 2:
        g = np.asarray([str(v) for v in valid_groups])
        uniq = np.unique(g)
        half = set(rng.permutation(uniq)[: len(uniq) // 2].tolist())
        fold = np.asarray([v in half for v in g])
    else:
        fold = np.zeros(nv, bool)
        fold[rng.permutation(nv)[: nv // 2]] = True
    lab_t = None if labels is None or np.asarray(labels).ndim > 1 else np.asarray(labels, int)
    lab_v = None if valid_labels is None or np.asarray(valid_labels).ndim > 1 else np.asarray(valid_labels, int)

    def both(name: str, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        f = np.concatenate([train[name], valid[name][idx]])
        lab = None if lab_t is None or lab_v is None else np.concatenate([lab_t, lab_v[idx]])
        return f, lab

    comps, oof = [], {}
    for name in layers:
        rank_c = component_rank(train[name].shape[1], rank)
        s = np.empty(nv)
        for held in (fold, ~fold):  # out-of-fold validation scores
            f, lab = both(name, np.flatnonzero(~held))
            s[held] = _gaussian_scores(fit_gaussian(f, lab, rank=rank_c), valid[name][held])
        center, scale = _standardise(s)
        oof[name] = (s - center) / scale
        f, lab = both(name, np.arange(nv))
        comps.append({"layer": name, **fit_gaussian(f, lab, rank=rank_c), "center": round(center, 6),
                      "scale": round(scale, 6), "fitted_on": f"train + valid ({len(f)} items)"})
    combined = np.max(np.stack([oof[n] for n in layers]), 0)
    thr = float(np.quantile(combined, quantile))
    return {"method": "multi_layer_mahalanobis", "combine": "max of standardised component scores",
            "layers": layers, "components": comps, "threshold": round(thr, 6), "threshold_quantile": quantile,
            "threshold_on": f"valid, out of fold ({nv} items)", "valid_flag_rate": float(np.mean(combined > thr)),
            "valid_scores_median": float(np.median(combined))}
