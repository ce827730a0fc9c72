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


class HoverOracle(torch.nn.Module):
    """A hover head that knows the answer: the input's first channel holds instance labels (/255),
    and the output logits give exactly their nuclear-pixel and distance maps, in any orientation."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from medattn.engine.seg_task import hover_target

        fg, hv = hover_target((x[:, 0] * 255).round().long())
        return torch.cat([(2 * fg[:, None] - 1) * 20, torch.atanh(hv.clamp(-0.999, 0.999))], 1) + self.dummy


def _label_image() -> np.ndarray:
    """Three nuclei (two touching, one an off-centre ellipse) as a uint8 label image, 60×72."""
    yy, xx = np.mgrid[:60, :72]
    lab = np.zeros((60, 72), np.uint8)
    lab[(yy - 20) ** 2 + (xx - 20) ** 2 <= 64] = 1
    lab[((yy - 20) ** 2 + (xx - 36) ** 2 <= 64) & (lab == 0)] = 2
    lab[((yy - 44) / 9.0) ** 2 + ((xx - 50) / 5.0) ** 2 <= 1] = 3
    return lab


@pytest.mark.parametrize("views", ["flips", 4, 8])
def test_hover_maps_survive_tta(views: int | str) -> None:
    """Un-flipping turns the distance maps back as vectors: the true maps with and without TTA."""
    from medattn.engine.seg_task import hover_target
    from medattn.infer.tiling import model_probs_fn

    lab = _label_image()[:56, :56] if views != "flips" else _label_image()  # rotations need a square
    x = torch.from_numpy(np.repeat(lab[None, None], 3, 1).astype(np.float32) / 255)
    plain = model_probs_fn(HoverOracle(), views=1, seg_target="hover")(x)
    tta = model_probs_fn(HoverOracle(), views=views, seg_target="hover")(x)
    fg, hv = hover_target(torch.from_numpy(lab.astype(np.int64))[None])
    assert tta.shape == (1, 4, *lab.shape)
    torch.testing.assert_close(tta, plain, atol=1e-5, rtol=0)
    torch.testing.assert_close(tta[:, 2:], hv.clamp(-0.999, 0.999), atol=1e-5, rtol=0)
    torch.testing.assert_close(tta[:, 1], fg, atol=1e-6, rtol=0)
    # without turning the vectors back the flipped views cancel the maps: the test can fail
    from medattn.models.outputs import probabilities

    naive = dihedral_mean(lambda v: probabilities(HoverOracle()(v), "segmentation", "hover"), x, dense=True,
                          views=views)
    assert (naive[:, 2:] - tta[:, 2:]).abs().max() > 0.5


def test_hover_bundle_with_tta_separates_touching_nuclei() -> None:
    """Through the predictor (tiles, flips, the bundle's default post-processing for a hover head)."""
    from medattn.metrics.instance import instance_metrics
    from tests.infer.conftest import make_predictor

    lab = _label_image()
    img = np.repeat(lab[..., None], 3, 2)
    for window in (32, 96):  # overlapping tiles that cut nuclei; one window over the whole image
        meta = {"task": "segmentation", "class_names": ["background", "foreground"], "input_size": window,
                "recipe": {"task": {"seg_target": "hover"},
                           "evaluation": {"tile_size": window, "tile_overlap": window // 2}}}
        plain = make_predictor(HoverOracle(), **meta).infer([img], trust=False)[0]
        tta = make_predictor(HoverOracle(), **meta, tta=True).infer([img], trust=False)[0]
        assert tta["postprocess"] == {"method": "hover"}
        np.testing.assert_allclose(tta["probability_map"], plain["probability_map"], atol=1e-5)
        assert tta["class_fractions"]["foreground"] == pytest.approx((lab > 0).mean())
    # the oracle's maps of nuclei cut by a tile do not match across tiles; whole, they are exact
    assert tta["objects"] == 3 and instance_metrics(lab, tta["instance_labels"])["aji"] > 0.97
