"""The trust checks read the prediction's own forward passes: the same OOD scores and TTA spread as a
separate pass would give, with one model call per view instead of three passes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medattn.bundle import load_bundle
from medattn.bundle.predictor import join_details, slice_details
from medattn.trust.assess import assess


@pytest.fixture(scope="module")
def predictor(smoke_pcam_run: Path):
    pred = load_bundle(smoke_pcam_run / "bundle")
    assert pred.meta.get("ood"), "the smoke bundle carries an OOD model"
    pred.meta["tta"] = True  # 8 views: the spread comes from the same passes
    return pred


def _count_calls(model: torch.nn.Module) -> tuple[list[int], object]:
    calls: list[int] = []
    handle = model.register_forward_hook(lambda _m, args, _o: calls.append(len(args[0])))
    return calls, handle


def test_details_give_the_same_trust_outputs_as_a_second_pass(predictor, tissue_1000: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    x = predictor.preprocess([tissue_1000[:96, :96], tissue_1000[200:296, 300:396],
                              rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)])
    d: dict = {}
    probs = predictor.predict_tensor(x, d)
    assert set(d) == {"features", "views"}
    assert d["views"].shape == (8, 3, 1)
    assert all(v.shape[0] == 3 for v in d["features"].values())
    np.testing.assert_allclose(d["views"].mean(0)[:, 0], probs, atol=1e-6)
    with_d = assess(predictor, None, x, probs, details=d)
    calls, h = _count_calls(predictor.model)
    again = assess(predictor, None, x, probs)
    h.remove()
    assert len(calls) == 9, "without details the checks run the 8 views and a feature pass again"
    for a, b in zip(with_d, again, strict=True):
        assert a["ood_score"] == pytest.approx(b["ood_score"], abs=1e-3)
        assert a["uncertainty"]["tta_std"] == pytest.approx(b["uncertainty"]["tta_std"], abs=1e-6)
        assert a["prediction_set"] == b["prediction_set"]


def test_infer_runs_the_model_once_per_view(predictor, tissue_1000: np.ndarray) -> None:
    calls, h = _count_calls(predictor.model)
    try:
        whole = predictor.infer([tissue_1000[:96, :96], tissue_1000[100:196, :96]])
        n_whole = len(calls)
        calls.clear()
        tiled = predictor.infer(tissue_1000, tile=True)
    finally:
        h.remove()
    assert n_whole == 8, "two images in one batch: one call per TTA view, none for the checks"
    assert all("ood_score" in a and "tta_std" in a["uncertainty"] for a in whole)
    assert tiled[0]["handling"] == "tiled" and "tile_ood_share" in tiled[0]
    n_batches = -(-tiled[0]["tiles"] // 16)
    assert len(calls) == 8 * n_batches


def test_slicing_and_joining_details_keep_row_order() -> None:
    a = {"features": {"head": np.arange(6.0).reshape(3, 2)}, "views": np.arange(24.0).reshape(8, 3, 1)}
    b = {"features": {"head": np.arange(4.0).reshape(2, 2) + 100}, "views": np.zeros((8, 2, 1))}
    j = join_details([a, b])
    assert j["features"]["head"].shape == (5, 2) and j["views"].shape == (8, 5, 1)
    s = slice_details(j, 2, 4)
    np.testing.assert_array_equal(s["features"]["head"], [[4.0, 5.0], [100.0, 101.0]])
    np.testing.assert_array_equal(s["views"][:, :, 0], np.stack([a["views"][:, 2, 0], np.zeros(8)], 1))
    assert join_details([a, None]) == {}
