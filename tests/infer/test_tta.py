"""Test-time augmentation: the 8 symmetries of the square, dense outputs turned back, bundles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medattn.infer.tta import DIHEDRAL, dihedral_mean


def test_eight_distinct_views() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4)
    from medattn.infer.tta import _view

    seen = {tuple(_view(x, k, f).flatten().tolist()) for k, f in DIHEDRAL}
    assert len(seen) == 8


def test_classification_views_average_the_corners() -> None:
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((3, 2, 5, 5)).astype(np.float32))

    def top_left(v: torch.Tensor) -> torch.Tensor:  # depends on orientation
        return v[:, :, 0, 0]

    got = dihedral_mean(top_left, x, views=8)
    corners = (x[:, :, 0, 0] + x[:, :, 0, -1] + x[:, :, -1, 0] + x[:, :, -1, -1]) / 4
    torch.testing.assert_close(got, corners)
    torch.testing.assert_close(dihedral_mean(top_left, x, views=1), x[:, :, 0, 0])
    with pytest.raises(ValueError, match="views must be"):
        dihedral_mean(top_left, x, views=3)


def test_dense_outputs_are_turned_back() -> None:
    x = torch.randn(2, 3, 6, 6)
    for views in (2, 4, 8):
        torch.testing.assert_close(dihedral_mean(lambda v: v * 2, x, dense=True, views=views), x * 2)


def test_bundle_with_tta_predicts_the_mean_of_views(tmp_path: Path) -> None:
    from medattn.bundle import load_bundle, save_bundle
    from medattn.engine.evaluate_run import predict_scores
    from medattn.models import create_model

    torch.manual_seed(0)
    model = create_model("patch_cnn_attention", width=0.25).eval()
    with torch.no_grad():  # larger weights: an untrained net is otherwise nearly orientation-blind
        for prm in model.parameters():
            prm.mul_(3.0)
    meta = {"task": "binary", "class_names": ["a", "b"], "input_size": 32, "in_chans": 3,
            "mean": [0.5] * 3, "std": [0.25] * 3, "threshold": 0.5}
    plain = load_bundle(save_bundle(model, meta, tmp_path / "plain"), device="cpu")
    tta = load_bundle(save_bundle(model, {**meta, "tta": True}, tmp_path / "tta"), device="cpu")
    img = np.zeros((32, 32, 3), np.uint8)
    img[:12, :20] = (200, 40, 90)  # an off-centre, asymmetric blob
    x = plain.preprocess([img])
    with torch.no_grad():
        by_hand = np.mean([torch.sigmoid(model(torch.rot90(x.flip(-1) if f else x, k, (-2, -1)))).item()
                           for k, f in DIHEDRAL])
        single = torch.sigmoid(model(x)).item()
    assert tta.infer(img)[0]["probabilities"]["b"] == pytest.approx(by_hand, abs=1e-6)
    assert plain.infer(img)[0]["probabilities"]["b"] == pytest.approx(single, abs=1e-6)
    assert abs(by_hand - single) > 1e-4  # the views really differ for this model
    # the dataset path gives the same numbers
    ds = torch.utils.data.TensorDataset(x, torch.zeros(1))
    assert predict_scores(model, ds, "binary", tta=8)[0] == pytest.approx(by_hand, abs=1e-6)


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_engine_scores_average_views(kind: str) -> None:
    from medattn.engine.evaluate_run import predict_scores

    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(1 if kind == "binary" else 3))
    x = torch.randn(5, 3, 8, 8)
    model(x)  # materialise the lazy layer
    ds = torch.utils.data.TensorDataset(x, torch.zeros(5))
    act = torch.sigmoid if kind == "binary" else (lambda z: torch.softmax(z, 1))
    with torch.no_grad():
        by_hand = torch.stack([act(model(torch.rot90(x.flip(-1) if f else x, k, (-2, -1)))) for k, f in DIHEDRAL]).mean(0)
    got = predict_scores(model, ds, kind, batch_size=2, tta=8)
    want = by_hand.numpy()[:, 0] if kind == "binary" else by_hand.numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)
    plain = predict_scores(model, ds, kind, tta=1)
    assert np.abs(plain - got).max() > 1e-3  # a position-dependent model: the views differ


def test_flips_are_the_four_mirror_images() -> None:
    x = torch.randn(1, 2, 5, 7)  # not square: flips keep the shape
    got = dihedral_mean(lambda v: v * 1.0, x, dense=False, views="flips")
    want = (x + x.flip(-1) + x.flip(-2) + x.flip(-2, -1)) / 4
    torch.testing.assert_close(got, want)
