"""The hover head: distance-map targets, its loss, its probabilities, and a trained bundle end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medattn.engine.seg_task import SegmentationTask, hover_target, hv_gradients
from medattn.errors import ConfigError, ModelError
from medattn.models.outputs import HOVER_CHANNELS, displacement_channels, probabilities


def touching_discs(h: int = 48, w: int = 64, r: int = 9) -> np.ndarray:
    """Instance labels of two discs of radius ``r`` side by side, touching at the image centre."""
    yy, xx = np.mgrid[:h, :w]
    lab = np.zeros((h, w), np.int64)
    cy, cx = h // 2, w // 2
    lab[(yy - cy) ** 2 + (xx - (cx - r)) ** 2 <= r * r] = 1
    lab[((yy - cy) ** 2 + (xx - (cx + r)) ** 2 <= r * r) & (lab == 0)] = 2
    return lab


def test_hover_target_of_two_touching_discs() -> None:
    lab = touching_discs()
    fg, hv = hover_target(torch.from_numpy(lab)[None])
    assert fg.shape == (1, 48, 64) and hv.shape == (1, 2, 48, 64)
    np.testing.assert_array_equal(fg[0].numpy(), lab > 0)
    h, v = hv[0, 0].numpy(), hv[0, 1].numpy()
    assert np.all(h[lab == 0] == 0) and np.all(v[lab == 0] == 0)  # zero on background
    for k in (1, 2):  # each nucleus spans exactly [-1, 1] in both maps
        assert h[lab == k].min() == pytest.approx(-1) and h[lab == k].max() == pytest.approx(1)
        assert v[lab == k].min() == pytest.approx(-1) and v[lab == k].max() == pytest.approx(1)
    cy, cx, r = 24, 32, 9
    # signs: left of a centre negative, right positive; above negative, below positive
    assert h[cy, cx - r - 4] < 0 < h[cy, cx - r + 4] and h[cy, cx + r - 4] < 0 < h[cy, cx + r + 4]
    assert v[cy - 4, cx - r] < 0 < v[cy + 4, cx - r]
    # the maps jump from +1 to -1 where the two nuclei touch
    assert h[cy, cx] > 0.8 and h[cy, cx + 1] < -0.8
    # symmetric: a disc's maps are odd about its centre, and the vertical map is the horizontal one turned
    disc = slice(cy - r, cy + r + 1), slice(cx - 2 * r, cx + 1)
    hd, vd = h[disc], v[disc]
    np.testing.assert_allclose(hd, -hd[:, ::-1], atol=1e-5)
    np.testing.assert_allclose(vd, -vd[::-1], atol=1e-5)
    np.testing.assert_allclose(vd, hd.T, atol=1e-5)


def test_hover_target_is_per_image_in_a_batch() -> None:
    a = touching_discs()
    b = np.zeros_like(a)
    b[5:20, 40:60] = 1  # the same id as a's first disc, another object
    both = hover_target(torch.from_numpy(np.stack([a, b])))
    for i, one in enumerate((a, b)):
        fg, hv = hover_target(torch.from_numpy(one)[None])
        torch.testing.assert_close(both[0][i], fg[0])
        torch.testing.assert_close(both[1][i], hv[0])
    with pytest.raises(ValueError, match="B×H×W"):
        hover_target(torch.zeros(4, 4, dtype=torch.long))


def oracle_logits(lab: torch.Tensor) -> torch.Tensor:
    """Logits whose hover probabilities are the true maps of ``lab`` (B×H×W)."""
    fg, hv = hover_target(lab)
    return torch.cat([(2 * fg[:, None] - 1) * 20, torch.atanh(hv.clamp(-0.999, 0.999))], 1)


def test_probabilities_of_a_hover_head() -> None:
    z = torch.randn(2, 3, 8, 8) * 3
    p = probabilities(z, "segmentation", "hover")
    assert p.shape == (2, len(HOVER_CHANNELS), 8, 8)
    torch.testing.assert_close(p[:, 1], torch.sigmoid(z[:, 0]))
    torch.testing.assert_close(p[:, 0] + p[:, 1], torch.ones(2, 8, 8))
    torch.testing.assert_close(p[:, 2:], torch.tanh(z[:, 1:]))
    assert p[:, 2:].abs().max() <= 1
    # the same logits read as a 3-class head: a softmax
    torch.testing.assert_close(probabilities(z, "segmentation"), torch.softmax(z, 1))
    assert displacement_channels("segmentation", "hover") == (2, 3)
    assert displacement_channels("segmentation", "three_class") is None
    with pytest.raises(ModelError, match="B×3×H×W"):
        probabilities(torch.randn(2, 1, 8, 8), "segmentation", "hover")
    with pytest.raises(ModelError, match="unknown segmentation head"):
        probabilities(z, "segmentation", "stardist")


def test_segment_classify_region_of_a_hover_segmenter() -> None:
    """A chain's region is the hover head's nuclear pixels (its distance maps are not classes)."""
    from medattn.models.emphasis import region_mask

    lab = torch.from_numpy(touching_discs())[None]
    logits = oracle_logits(lab)
    np.testing.assert_array_equal(region_mask(logits, (48, 64), seg_target="hover")[0].numpy(), lab[0].numpy() > 0)
    assert not torch.equal(region_mask(logits, (48, 64))[0], lab[0] > 0)  # read as 3 classes it is wrong


def test_hover_loss_is_lowest_at_the_true_maps() -> None:
    from medattn.models import create_model

    lab = torch.from_numpy(np.stack([touching_discs(), touching_discs()[::-1].copy()]))
    task = SegmentationTask(torch.nn.Identity(), seg_target="hover")
    best, t = task._hover_loss(oracle_logits(lab), lab)
    torch.testing.assert_close(t, (lab > 0).long())
    noisy = task._hover_loss(oracle_logits(lab) + torch.randn(2, 3, 48, 64), lab)[0]
    assert float(best) < 0.05 and float(noisy) > float(best) + 0.1
    swapped = oracle_logits(lab)[:, [0, 2, 1]]  # horizontal and vertical maps exchanged
    assert float(task._hover_loss(swapped, lab)[0]) > float(best) + 0.1
    # gradients reach a real hover U-Net through every term
    model = create_model("unet", num_classes=3, depth=2, width=4, head="hover")
    assert model.channel_names == ["foreground", "horizontal", "vertical"]
    task = SegmentationTask(model, seg_target="hover")
    loss, logits, _ = task._step((torch.randn(2, 3, 48, 64), lab))
    loss.backward()
    assert logits.shape == (2, 3, 48, 64) and torch.isfinite(loss)
    assert all(p.grad is not None for p in model.head.parameters())


def test_hv_gradients_see_the_jump_between_nuclei() -> None:
    _, hv = hover_target(torch.from_numpy(touching_discs())[None])
    g = hv_gradients(hv)[0]
    assert g.shape == (2, 48, 64)
    assert g[0, 24, 32] < -0.5 and g[0, 24, 23] > 0  # falls at the contact, rises inside a nucleus


def test_hover_needs_instance_masks() -> None:
    from medattn.engine.config import load_recipe, recipe_from_dict

    raw = load_recipe("nuclei-cpu-hover").model_dump(mode="json")
    raw["data"]["options"] = {"binary": True}
    with pytest.raises(ConfigError, match="instance label masks"):
        recipe_from_dict(raw)


def test_trained_hover_bundle_predicts_instances(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A short train of nuclei-cpu-hover on synthetic nuclei writes a hover bundle; predict finds nuclei."""
    import csv

    from PIL import Image

    from medattn.bundle import load_bundle
    from medattn.cli import main
    from medattn.data.synthetic.nuclei import write_nuclei
    from medattn.metrics.instance import instance_metrics
    from medattn.trust.card import decision_text

    data = write_nuclei(tmp_path / "data", n=10, size=128, n_nuclei=25)
    out = tmp_path / "run"
    code = main(["train", "nuclei-cpu-hover", "--smoke", "--data", str(data), "--out", str(out),
                 "--set", "trainer.max_epochs=2", "--set", "trainer.limit_train_batches=6",
                 "--set", "data.train_repeats=4", "--set", "trainer.batch_size=4"])
    assert code == 0, capsys.readouterr().err[-2000:]
    bundle = json.loads((out / "bundle" / "bundle.json").read_text())
    assert bundle["recipe"]["task"]["seg_target"] == "hover"
    assert bundle["class_names"] == ["background", "foreground"]
    assert bundle["postprocess"]["method"] in ("hover", "watershed", "connected")  # chosen on validation AJI
    assert json.loads((out / "metrics.json").read_text())["metrics"]["dice"]["value"] > 0.5
    image = data / "images" / "tile_000.png"
    assert main(["predict", str(out / "bundle"), str(image), "--out", str(tmp_path / "pred")]) == 0
    row = next(csv.DictReader((tmp_path / "pred" / "predictions.csv").open()))
    assert row["postprocess_method"] == bundle["postprocess"]["method"]
    labels = np.asarray(Image.open(tmp_path / "pred" / row["mask"]))
    truth = np.asarray(Image.open(data / "masks" / "tile_000.png"))
    assert int(row["objects"]) >= 5 and len(np.unique(labels[labels > 0])) == int(row["objects"])
    assert instance_metrics(truth, labels)["aji"] > 0.3
    pred = load_bundle(out / "bundle", device="cpu")
    assert pred.seg_target == "hover"
    assert "distance maps" in decision_text(pred.meta) and "likeliest class" not in decision_text(pred.meta)
    res = pred.infer([str(image)], trust=False)[0]
    assert res["probability_map"].shape == (4, 128, 128)
    assert set(res["class_fractions"]) == {"background", "foreground"}
