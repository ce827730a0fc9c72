"""Feature-space Gaussian (exact Mahalanobis when no direction is dropped), input contract checks,
entropy and MC dropout."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from medattn.trust.contract import check_image, image_stats, summarise_stats
from medattn.trust.ood import HEAD, capture_features, fit_gaussian, ood_scores
from medattn.trust.uncertainty import has_dropout, mc_dropout, normalised_entropy


def _features(n: int, d: int, rng: np.random.Generator, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    a = q @ np.diag(np.linspace(0.5, 1.5, d))  # well-conditioned tied covariance
    y = rng.integers(0, 2, n)
    f = rng.normal(size=(n, d)) @ a.T * 0.5 + np.where(y[:, None] == 1, 1.0, -1.0) * np.eye(d)[0] * 2 + shift
    return f, y


def test_full_rank_score_is_the_tied_covariance_mahalanobis_distance() -> None:
    rng = np.random.default_rng(0)
    f, y = _features(3000, 8, rng)
    doc = fit_gaussian(f, y, f[:500], rank=7)
    mus = np.stack([f[y == c].mean(0) for c in (0, 1)])
    c = f - mus[y]
    prec = np.linalg.inv(c.T @ c / (len(f) - 2))
    x = rng.normal(size=(50, 8))
    exact = np.min([np.einsum("nd,de,ne->n", x - m, prec, x - m) for m in mus], 0)
    np.testing.assert_allclose(ood_scores(doc, x), exact, rtol=2e-3)
    assert abs(np.mean(ood_scores(doc, f[:500]) <= doc["threshold"]) - 0.95) < 0.01


def test_low_rank_score_separates_shifted_features() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    f, y = _features(2000, 64, rng)
    val, _ = _features(400, 64, rng)
    doc = fit_gaussian(f, y, val, rank=8)
    assert len(doc["eigvecs"]) == 8 and len(doc["eigvecs"][0]) == 64
    far, _ = _features(400, 64, rng, shift=0.8)
    s = np.r_[ood_scores(doc, val), ood_scores(doc, far)]
    assert roc_auc_score(np.r_[np.zeros(400), np.ones(400)], s) > 0.95


def test_capture_features_reads_the_last_linear_input() -> None:
    m = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 2))
    with capture_features(m) as store:
        m(torch.zeros(3, 12))
    assert store[HEAD][0].shape == (3, 5)


def test_contract_warns_on_size_aspect_grey_and_intensity() -> None:
    rng = np.random.default_rng(2)
    train = [np.clip(rng.normal([200, 120, 180], 20, (50, 50, 3)), 0, 255).astype(np.uint8) for _ in range(40)]
    c = summarise_stats([image_stats(t) for t in train], in_chans=3, input_size=50)
    assert c["colour"] == "colour" and c["height"] == [50, 50, 50]
    ok = np.clip(rng.normal([200, 120, 180], 20, (60, 60, 3)), 0, 255).astype(np.uint8)
    assert check_image(c, ok) == []
    big = np.tile(ok, (17, 17, 1))
    assert [w["code"] for w in check_image(c, big)] == ["input_size"]
    wide = np.tile(ok, (1, 3, 1))[:40]
    assert "aspect" in {w["code"] for w in check_image(c, wide)}
    grey = np.repeat(ok.mean(2, keepdims=True).astype(np.uint8), 3, 2)
    assert "channels" in {w["code"] for w in check_image(c, grey)}
    dark = (ok // 4).astype(np.uint8)
    assert "intensity" in {w["code"] for w in check_image(c, dark)}
    assert check_image({}, big) == []


def test_entropy_and_mc_dropout() -> None:
    np.testing.assert_allclose(normalised_entropy(np.array([0.5, 1.0, 0.0]), "binary"), [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(normalised_entropy(np.array([[0.25] * 4, [1, 0, 0, 0]]), "multiclass"), [1, 0],
                               atol=1e-6)
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3)).eval()
    assert has_dropout(m) and not has_dropout(nn.Linear(2, 2))
    x = torch.randn(5, 4)
    out = mc_dropout(lambda v: torch.softmax(m(v), 1), m, x, 16, "multiclass")
    assert out["mean"].shape == (5, 3) and (out["mc_std"] > 0).all() and not m[2].training
    again = mc_dropout(lambda v: torch.softmax(m(v), 1), m, x, 16, "multiclass")
    np.testing.assert_allclose(out["mean"], again["mean"])  # seeded: the same image, the same answer
