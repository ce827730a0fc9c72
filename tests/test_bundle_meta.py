"""bundle.json checked for meaning at load time: each rule refuses a tampered file in one line."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from medattn.bundle import load_bundle, save_bundle
from medattn.bundle_meta import check_bundle_meta
from medattn.errors import BundleError
from medattn.trust.conformal import fit_conformal
from medattn.trust.ood import fit_gaussian

META: dict[str, Any] = {"task": "binary", "class_names": ["normal", "tumour"], "input_size": 32, "in_chans": 3,
                        "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "threshold": 0.4, "mpp": 0.5,
                        "large_input": {"policy": "tile", "factor": 2.0},
                        "recipe": {"data": {"mpp": 0.5}}}


def _trust_numbers() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40)
    p = np.clip(0.3 * y + rng.random(40) * 0.7, 0, 1)
    f = rng.normal(size=(40, 6)) + y[:, None]
    return {"conformal": fit_conformal("binary", y, p, META["class_names"]),
            "ood": fit_gaussian(f, y, f[:10], rank=3)}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medattn.models import create_model

    torch.manual_seed(0)
    model = create_model("patch_cnn_attention", width=0.25)
    return save_bundle(model, {**META, **_trust_numbers()}, tmp_path_factory.mktemp("b") / "bundle")


@pytest.fixture(scope="module")
def multiclass(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medattn.models import create_model

    torch.manual_seed(0)
    model = create_model("patch_cnn_attention", width=0.25, num_classes=3)
    meta = {**META, "task": "multiclass", "class_names": ["a", "b", "c"],
            "positive_view": {"name": "abnormal", "classes": ["b", "c"], "threshold": 0.3}}
    return save_bundle(model, meta, tmp_path_factory.mktemp("m") / "bundle")


def _tamper(src: Path, dst: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    shutil.copytree(src, dst)
    meta = json.loads((dst / "bundle.json").read_text())
    edit(meta)
    (dst / "bundle.json").write_text(json.dumps(meta))
    return dst


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(meta: dict[str, Any]) -> None:
        *head, last = path.split(".")
        d: Any = meta
        for k in head:
            d = d[int(k)] if isinstance(d, list) else d[k]
        if isinstance(d, list):
            d[int(last)] = value
        else:
            d[last] = value
    return edit


def test_intact_bundles_load(bundle: Path, multiclass: Path) -> None:
    assert load_bundle(bundle, device="cpu").threshold == 0.4
    assert load_bundle(multiclass, device="cpu").class_names == ["a", "b", "c"]


BINARY_CASES = [
    ("class_names", _set("class_names", ["a"]), "exactly 2 classes"),
    ("class_names", _set("class_names", ["a", "a"]), "distinct"),
    ("architecture.kwargs.num_classes", _set("architecture.kwargs.num_classes", 2), "head of 1 output"),
    ("task", _set("task", "regression"), "one of binary"),
    ("threshold", _set("threshold", 7), r"probabilities in \[0, 1\]"),
    ("threshold", _set("threshold", -0.1), r"probabilities in \[0, 1\]"),
    ("thresholds[1]", _set("thresholds", [0.5, 1.5]), r"probabilities in \[0, 1\]"),
    ("thresholds", _set("thresholds", [0.5]), "one threshold per class"),
    ("temperature", _set("temperature", 0), "positive"),
    ("mean", _set("mean", [0.5, 0.5]), "3 finite numbers"),
    ("std", _set("std", [0.25, 0.0, 0.25]), "> 0"),
    ("std", _set("std", [0.25, -1, 0.25]), "> 0"),
    ("input_size", _set("input_size", 0), "positive"),
    ("input_size", _set("input_size", [32, -4]), "positive"),
    ("mpp", _set("mpp", 0), "positive"),
    ("recipe.data.mpp", _set("recipe.data.mpp", -0.25), "positive"),
    ("conformal.strata.0.scores", _set("conformal.strata.0.scores", [0.9, 0.1, 0.5]), "sorted"),
    ("conformal.strata.1.scores[1]", _set("conformal.strata.1.scores", [0.1, float("nan")]), "finite"),
    ("conformal.default_alpha", _set("conformal.default_alpha", 1.5), r"\(0, 1\)"),
    ("conformal.strata", lambda m: m["conformal"]["strata"].pop("1"), "strata 0, 1"),
    ("ood.threshold", _set("ood.threshold", None), "finite"),
    ("ood.means[0][2]", _set("ood.means.0.2", None), "finite"),
    ("ood.eigvals", _set("ood.eigvals", [1.0, -2.0, 0.5]), "> 0"),
    ("ood.residual_var", _set("ood.residual_var", 0), "positive"),
    ("ood.eigvecs", _set("ood.eigvecs", [[0.0] * 6]), "3 rows of 6"),
    ("large_input.policy", _set("large_input.policy", "shrink"), "'tile' or 'refuse'"),
    ("large_input.factor", _set("large_input.factor", 0.5), "≥ 1"),
]


@pytest.mark.parametrize(("field", "edit", "why"), BINARY_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(BINARY_CASES)])
def test_tampered_binary_field_refused(bundle: Path, tmp_path: Path, field: str,
                                       edit: Callable[[dict[str, Any]], None], why: str) -> None:
    bad = _tamper(bundle, tmp_path / "bad", edit)
    with pytest.raises(BundleError, match=why) as err:
        load_bundle(bad, device="cpu")
    msg = str(err.value)
    assert f"field '{field}'" in msg and "bundle.json" in msg and "re-export the bundle" in msg
    assert "\n" not in msg and len(msg) < 300


MULTICLASS_CASES = [
    ("class_names", _set("class_names", ["a"]), "at least 2 classes"),
    ("architecture.kwargs.num_classes", _set("class_names", ["a", "b", "c", "d"]), "head of 4 output"),
    ("positive_view.threshold", _set("positive_view.threshold", 2), r"\[0, 1\]"),
    ("positive_view.classes", _set("positive_view.classes", ["b", "x"]), "the bundle's classes"),
]


@pytest.mark.parametrize(("field", "edit", "why"), MULTICLASS_CASES, ids=[c[0] for c in MULTICLASS_CASES])
def test_tampered_multiclass_field_refused(multiclass: Path, tmp_path: Path, field: str,
                                           edit: Callable[[dict[str, Any]], None], why: str) -> None:
    bad = _tamper(multiclass, tmp_path / "bad", edit)
    with pytest.raises(BundleError, match=why) as err:
        load_bundle(bad, device="cpu")
    assert f"field '{field}'" in str(err.value)


def test_multilabel_conformal_per_finding_is_checked() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, (30, 2))
    p = rng.random((30, 2))
    meta = {**META, "task": "multilabel", "class_names": ["x", "y"], "architecture": {"name": "m", "kwargs": {}},
            "conformal": fit_conformal("multilabel", y, p, ["x", "y"])}
    check_bundle_meta(meta, "b")
    meta["conformal"]["labels"]["y"]["1"]["scores"].reverse()
    with pytest.raises(BundleError, match=r"field 'conformal.labels.y.1.scores' .* sorted"):
        check_bundle_meta(meta, "b")


def test_ood_threshold_is_finite_without_validation_items() -> None:
    f = np.random.default_rng(2).normal(size=(20, 5))
    doc = fit_gaussian(f, None, f[:0], rank=2)
    assert np.isfinite(doc["threshold"]) and "no validation" in doc["threshold_on"]
