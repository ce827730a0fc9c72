"""Evaluation figures and HTML sections."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medattn.errors import DataError
from medattn.report.eval_plots import (
    OVERLAY_COLOURS,
    save_pr_curve,
    save_reliability,
    save_seg_overlay,
    seg_overlay_rgb,
)
from medattn.report.sections import comparison_table, metrics_ci_table, per_class_table


def _is_png(path) -> bool:
    with Image.open(path) as im:
        return im.format == "PNG" and im.size[0] > 100


def test_pr_and_reliability_pngs(tmp_path) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.clip(0.5 + (y - 0.5) * 0.5 + rng.normal(0, 0.2, 200), 0, 1)
    assert _is_png(save_pr_curve({"a": (y, p), "b": (y, 1 - p)}, tmp_path / "pr.png"))
    pc = rng.dirichlet(np.ones(3), 200)
    assert _is_png(save_reliability({"bin": (y, p), "multi": (rng.integers(0, 3, 200), pc)}, tmp_path / "cal.png"))
    assert not list(tmp_path.glob("*.tmp*"))  # atomic writes leave nothing behind


def test_overlay_colours_tp_fp_fn(tmp_path) -> None:
    img = np.zeros((4, 4), np.uint8)
    t = np.array([[1, 1, 0, 0]] * 4)
    p = np.array([[1, 0, 1, 0]] * 4)
    rgb = seg_overlay_rgb(img, t, p, alpha=1.0)
    assert tuple(rgb[0, 0]) == OVERLAY_COLOURS["tp"]
    assert tuple(rgb[0, 1]) == OVERLAY_COLOURS["fn"]
    assert tuple(rgb[0, 2]) == OVERLAY_COLOURS["fp"]
    assert tuple(rgb[0, 3]) == (0, 0, 0)
    assert _is_png(save_seg_overlay(np.full((32, 32, 3), 0.5), np.eye(32), np.eye(32), tmp_path / "o.png", "x"))
    with pytest.raises(DataError, match="same height"):
        seg_overlay_rgb(np.zeros((5, 5)), t, p)


def test_sections_html() -> None:
    html = metrics_ci_table({"auroc": {"value": 0.91234, "ci_low": 0.88, "ci_high": float("nan")}})
    assert "0.912" in html and "95% CI" in html and "n/a" in html
    assert "<td>b&lt;1&gt;</td>" in per_class_table({"b<1>": {"f1": 0.5, "support": 3}})
    cmp = {"alpha": 0.05, "metrics": {"auroc": {"value_a": 0.8, "value_b": 0.9, "diff": 0.1, "ci_low": 0.05,
                                                "ci_high": 0.15, "p_value": 0.002}}}
    assert "B − A" in comparison_table(cmp) and "0.0020" in comparison_table(cmp)
