"""Faithfulness: localisation against masks and boxes, deletion/insertion, ROAD, randomisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import shared_data
from medattn.errors import DataError
from medattn.explain.faithfulness import (
    boxes_to_mask,
    deletion_insertion,
    energy_in_mask,
    localisation_scores,
    pointing_game,
    randomisation_check,
    read_bbox_csv,
    road_scores,
)
from medattn.explain.targets import BinaryLogitTarget


class RegionModel(nn.Module):
    """Logit = mean intensity of the top-left 8×8 region (a model whose evidence is known)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(4.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.scale * (x[:, :, :8, :8].mean((1, 2, 3)) - 0.5))[:, None]


def test_pointing_and_energy() -> None:
    m = np.zeros((10, 10), bool)
    m[2:4, 2:4] = True
    s = np.zeros((10, 10))
    s[3, 3] = 1.0
    s[8, 8] = 0.5
    assert pointing_game(s, m) == 1.0 and energy_in_mask(s, m) == pytest.approx(1 / 1.5)
    assert localisation_scores(np.stack([s, s]), np.stack([m, np.zeros_like(m)]))["n"] == 1


def test_bbox_csv_in_the_chestxray14_layout(tmp_path: Path) -> None:
    p = tmp_path / "BBox_List_2017.csv"
    p.write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
                 "a.png,Mass,512,0,256,512\na.png,Nodule,0,0,64,64\nb.png,Mass,1,2,3,4\n")
    boxes = read_bbox_csv(p)
    assert boxes["a.png"][0] == ("Mass", 512.0, 0.0, 256.0, 512.0) and len(boxes["a.png"]) == 2
    mask = boxes_to_mask([boxes["a.png"][0][1:]], (64, 64))  # 1024 space → 64 px: x 32..48, y 0..32
    assert mask.sum() == 16 * 32 and mask[0, 32] and not mask[0, 31] and not mask[32, 40]
    assert boxes_to_mask([(0, 0, 0.1, 0.1)], (64, 64)).sum() == 1  # a tiny box still marks a pixel
    bad = tmp_path / "bad.csv"
    bad.write_text("file,label\nx,y\n")
    with pytest.raises(DataError, match="Image Index"):
        read_bbox_csv(bad)
    with pytest.raises(DataError, match="not found"):
        read_bbox_csv(tmp_path / "missing.csv")


def test_real_chestxray14_boxes_parse() -> None:
    root = shared_data("nih_chestxray14_dev")
    boxes = read_bbox_csv(root / "BBox_List_2017.csv.gz")
    assert sum(len(v) for v in boxes.values()) == 984
    labels = {r[0] for v in boxes.values() for r in v}
    assert {"Atelectasis", "Cardiomegaly", "Mass", "Nodule"} <= labels
    for rows in list(boxes.values())[:50]:
        for _, x, y, w, h in rows:
            assert 0 <= x < 1024 and 0 <= y < 1024 and w > 0 and h > 0


def test_deletion_insertion_rank_a_faithful_map_above_an_unfaithful_one() -> None:
    model = RegionModel()
    x = torch.zeros(2, 1, 32, 32)
    x[:, :, :8, :8] = 1.0  # the evidence: p = sigmoid(2) on the image, sigmoid(-2) without it
    good = np.zeros((2, 32, 32), np.float32)
    good[:, :8, :8] = 1.0
    good += np.linspace(0, 0.01, 32 * 32, dtype=np.float32).reshape(32, 32)
    bad = (1.0 - good).astype(np.float32)  # the evidence ranked last
    tg = [BinaryLogitTarget(True)] * 2
    g = deletion_insertion(model, x, good, tg, steps=8)
    b = deletion_insertion(model, x, bad, tg, steps=8)
    assert (g["deletion_auc"] < b["deletion_auc"] - 0.2).all()
    assert (g["insertion_auc"] > b["insertion_auc"]).all()
    assert g["deletion_curve"].shape == (2, 9)
    r = road_scores(model, x, good, tg, percentiles=(50,))
    assert r["combined"].shape == (2,) and np.isfinite(r["combined"]).all()


class SpatialHead(nn.Module):
    """conv → ReLU → a learned spatial weighting: the evidence lives where the weights are."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        w = torch.zeros(1, 1, 16, 16)
        w[..., 2:7, 9:14] = 1.0
        self.where = nn.Parameter(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.features(x) * self.where).mean((1, 2, 3))[:, None]


def test_randomisation_check_separates_model_maps_from_model_independent_ones() -> None:
    model = SpatialHead().eval()
    x = torch.rand(2, 1, 16, 16) + 0.5
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = randomisation_check(model, x, method="layercam", cascade=True)
    assert res.passed and res.similarity < 0.5, res
    assert [n for n, _ in res.cascade] == ["features"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the model itself was changed"

    def edges(_m: nn.Module, xx: torch.Tensor, _t: object) -> np.ndarray:
        return xx.abs().mean(1).numpy()

    ctrl = randomisation_check(model, x, explainer=edges)
    assert not ctrl.passed and ctrl.similarity == pytest.approx(1.0)
