"""The localisation study on SynthPCam: a trained attention CNN's Grad-CAM against baselines.

Slow (trains the ``pcam-attention`` recipe, width 0.5, for 2 epochs on 1,000 patches, through
``medattn train``'s code). Prints the figures as one JSON line (run with ``-s`` to see them).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch


def _study(root: Path) -> dict:
    import h5py

    from medattn.bundle import load_bundle
    from medattn.data.formats.pcam_h5 import PCamH5Dataset
    from medattn.data.synthetic import PCamDifficulty, write_pcam
    from medattn.data.transforms import build_transforms
    from medattn.engine.config import load_recipe
    from medattn.engine.runner import train_run
    from medattn.explain.attention_maps import attention_maps, spatial_maps
    from medattn.explain.cam import compute_cams
    from medattn.explain.faithfulness import (
        centre_gaussian_map,
        deletion_insertion,
        localisation_scores,
        random_map,
        randomisation_check,
    )
    from medattn.explain.targets import BinaryLogitTarget

    data = write_pcam(root / "data", {"train": 1000, "valid": 200, "test": 200}, seed=1,
                      difficulty=PCamDifficulty(contrast=0.6))
    tf = build_transforms("histo", train=False)
    recipe = load_recipe("pcam-attention", {
        "data.root": str(data), "data.num_workers": 0, "model.args.width": 0.5, "optimizer.lr": 2e-3,
        "trainer.max_epochs": 2, "trainer.batch_size": 32, "trainer.progress": False,
        "evaluation.n_boot": 10, "evaluation.n_cams": 0,
    })
    summary = train_run(recipe, out=root / "run")  # `medattn train`'s code: recipe → fit.py → bundle
    best = load_bundle(root / "run" / "bundle", device="cpu").model
    test = PCamH5Dataset(data, "test", tf)
    pos = np.nonzero(test.labels() == 1)[0]
    x = torch.stack([test[int(i)][0] for i in pos])
    with h5py.File(data / "camelyonpatch_level_2_split_test_mask.h5", "r") as f:
        masks = np.asarray(f["mask"][:])[pos].astype(bool)
    tg = [BinaryLogitTarget(True)] * len(x)
    cams = compute_cams(best, x, tg, method="gradcam")
    rng = np.random.default_rng(0)
    h, w = masks.shape[1:]
    rand = np.stack([random_map(h, w, rng) for _ in masks])
    centre = np.stack([centre_gaussian_map(h, w)] * len(masks))
    att = spatial_maps(attention_maps(best, x), combine="product")
    res = {
        "val_auroc": summary["stages"]["main"]["best_val"], "n_positive_test": len(x),
        "gradcam": localisation_scores(cams, masks),
        "gradcam++": localisation_scores(compute_cams(best, x, tg, method="gradcam++"), masks),
        "native_attention": localisation_scores(att, masks),
        "random": localisation_scores(rand, masks),
        "centre_gaussian": localisation_scores(centre, masks),
    }
    k = min(24, len(x))
    di_cam = deletion_insertion(best, x[:k], cams[:k], tg[:k], steps=16)
    di_rnd = deletion_insertion(best, x[:k], rand[:k], tg[:k], steps=16)
    res["deletion_auc"] = {"gradcam": float(di_cam["deletion_auc"].mean()), "random": float(di_rnd["deletion_auc"].mean())}
    res["insertion_auc"] = {"gradcam": float(di_cam["insertion_auc"].mean()),
                            "random": float(di_rnd["insertion_auc"].mean())}
    rc = randomisation_check(best, x[:k], tg[:k], method="gradcam", cascade=True)
    res["randomisation"] = {"similarity": rc.similarity, "passed": rc.passed, "cascade": rc.cascade}

    def intensity(_m: torch.nn.Module, xx: torch.Tensor, _t: object) -> np.ndarray:
        return (-xx.mean(1)).numpy()  # dark pixels: an "explanation" that ignores the model

    ctrl = randomisation_check(best, x[:k], tg[:k], explainer=intensity)
    res["randomisation_control_edge_map"] = {"similarity": ctrl.similarity, "passed": ctrl.passed}
    return res


@pytest.mark.slow
def test_trained_gradcam_beats_random_and_centre_maps(tmp_path: Path) -> None:
    res = _study(tmp_path)
    print("SYNTHPCAM_LOCALISATION " + json.dumps(res, default=float))
    g, r, c = res["gradcam"], res["random"], res["centre_gaussian"]
    assert res["val_auroc"] > 0.8
    assert g["pointing_game"] > r["pointing_game"] and g["pointing_game"] > c["pointing_game"]
    assert g["energy_in_mask"] > r["energy_in_mask"] and g["energy_in_mask"] > c["energy_in_mask"]
    assert res["randomisation"]["passed"], "Grad-CAM did not change when the weights were randomised"
    assert not res["randomisation_control_edge_map"]["passed"], "a model-independent map must fail the check"
    assert res["deletion_auc"]["gradcam"] < res["deletion_auc"]["random"]
