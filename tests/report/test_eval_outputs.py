"""Run-directory evaluation files written in one call."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from medattn.metrics.multiclass import multiclass_per_class
from medattn.report.eval_outputs import (
    write_classification_figures,
    write_per_class_csv,
    write_segmentation_outputs,
)


def test_classification_outputs(tmp_path) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 90)
    p = rng.dirichlet(np.ones(3), 90)
    files = write_classification_figures(tmp_path, y, p, ["a", "b", "c"])
    assert {f.name for f in files.values()} == {"calibration.png", "roc_curve.png", "pr_curve.png"}
    per = multiclass_per_class(y, p, ["a", "b", "c"])
    rows = list(csv.DictReader(write_per_class_csv(per, tmp_path / "per_class_metrics.csv").open()))
    assert [r["class"] for r in rows] == ["a", "b", "c"]
    assert float(rows[1]["auroc"]) == pytest.approx(per["b"]["auroc"])
    yb = rng.integers(0, 2, 50)
    assert len(write_classification_figures(tmp_path / "bin", yb, rng.random(50))) == 3


def test_segmentation_outputs(tmp_path) -> None:
    true = np.zeros((32, 32), np.int32)
    true[4:12, 4:12] = 3
    pred = np.roll(true, 2, axis=0)
    res = write_segmentation_outputs(tmp_path, [("x", true, pred, np.zeros((32, 32))), ("y", true, true, None)])
    rows = list(csv.DictReader(res["csv"].open()))
    assert [r["image"] for r in rows] == ["x", "y"] and float(rows[1]["pq"]) == 1.0
    assert [p.name for p in res["overlays"]] == ["x.png"]
    assert res["mean"]["dice"] == pytest.approx((float(rows[0]["dice"]) + 1.0) / 2)
