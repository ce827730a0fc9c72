"""Report layout fixes: n/a instead of "None – None", integer counts, legends outside the curves,
named confusion matrices, CAM thumbnails with probability and mask outline, provenance."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medattn.report.cams import cam_caption, cam_thumbnail
from medattn.report.html import Report, figure_html
from medattn.report.plots import confusion_title
from medattn.report.sections import comparison_table, fmt_value, metrics_ci_table, per_class_table


def test_missing_intervals_read_n_a_never_none() -> None:
    html = metrics_ci_table({"auroc": {"value": 0.81, "ci_low": None, "ci_high": None},
                             "ece": {"value": float("nan"), "ci_low": float("nan"), "ci_high": 0.2},
                             "f1": {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6}})
    assert "None" not in html and "<td>n/a</td>" in html and "0.400 – 0.600" in html
    cmp = comparison_table({"alpha": 0.05, "metrics": {"auroc": {"value_a": 0.8, "value_b": 0.9, "diff": 0.1,
                                                                 "ci_low": None, "ci_high": None, "p_value": None}}})
    assert "None" not in cmp


def test_counts_are_integers_even_from_csv_floats() -> None:
    html = per_class_table({"Atelectasis": {"auroc": 1.0, "support": 1.0, "prevalence": 0.111},
                            "Hernia": {"auroc": float("nan"), "support": 0.0, "prevalence": 0.0}})
    assert "<td>1</td>" in html and "<td>0</td>" in html and "support 1.000" not in html
    assert "<td>1.000</td>" in html and "<td>n/a</td>" in html  # AUROC keeps its decimals
    assert fmt_value(3.0, column="support") == "3" and fmt_value(2.5, column="support") == "2.500"


def test_confusion_matrix_title_names_the_model(tmp_path: Path) -> None:
    assert confusion_title(tmp_path / "patch_cnn_attention" / "cm.png") == "confusion matrix — patch_cnn_attention"
    assert confusion_title(tmp_path / "x.png", model="AG-CNN") == "confusion matrix — AG-CNN"
    assert confusion_title(tmp_path / "x.png", title="mine") == "mine"


def test_reliability_legend_sits_outside_the_curve_axes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import medattn.report.eval_plots as ep

    seen = {}

    def keep(fig, path):  # noqa: ANN001, ANN202
        fig.canvas.draw()
        seen["fig"] = fig
        return Path(path)

    monkeypatch.setattr(ep, "save_figure", keep)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = np.clip(0.5 + (y - 0.5) * 0.6 + rng.normal(0, 0.2, 300), 0, 1)
    ep.save_reliability({"model A": (y, p), "model B": (y, p ** 2)}, tmp_path / "cal.png")
    fig = seen["fig"]
    renderer = fig.canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    for ax in fig.axes:
        assert not legend.overlaps(ax.get_window_extent(renderer))
    assert [t.get_text() for t in fig.legends[0].get_texts()][0] == "perfect calibration"


def _png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def test_cam_thumbnail_caption_and_mask_outline() -> None:
    assert cam_caption(0.934, "tumour", "p_017") == "tumour p=0.93 · p_017"
    assert cam_caption(None, "", "p_017") == "p_017"
    img = np.full((64, 64, 3), 40, np.uint8)
    cam = np.zeros((8, 8))
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 1
    plain = _png(cam_thumbnail(img, cam, prob=0.9, label="tumour"))
    outlined = _png(cam_thumbnail(img, cam, prob=0.9, label="tumour", mask=mask))
    assert plain.shape == outlined.shape
    white = (outlined > 200).all(-1) & ~(plain > 200).all(-1)
    assert white.sum() > 50  # the outline: new white pixels
    assert not (_png(cam_thumbnail(img, cam, prob=0.1, label="tumour")) == plain).all()  # caption differs


def test_report_has_provenance_with_absolute_output_folder(tmp_path: Path) -> None:
    rep = Report("medattn run: x", provenance={"recipe": "pcam-attention"})
    rep.add("a", "A", figure_html(b"\x89PNG", "confusion matrix — patch_cnn_baseline"))
    out = rep.write(tmp_path / "sub" / "report.html").read_text()
    assert f"<td>written to</td><td>{(tmp_path / 'sub').resolve()}</td>" in out
    assert "<td>recipe</td><td>pcam-attention</td>" in out and "<td>medattn</td>" in out
    assert "<figcaption>confusion matrix — patch_cnn_baseline</figcaption>" in out
    fixed = rep.render(now=datetime(2026, 12, 1, 9, 30, tzinfo=UTC))
    assert "generated 2026-12-01 09:30:00 UTC by medattn" in fixed


def test_crowded_roc_legend_goes_beside_the_axes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import medattn.report.plots as pl

    seen = {}

    def keep(fig, path):  # noqa: ANN001, ANN202
        fig.canvas.draw()
        seen["fig"] = fig
        return Path(path)

    monkeypatch.setattr(pl, "save_figure", keep)
    rng = np.random.default_rng(1)
    curves = {f"finding {k}": (rng.integers(0, 2, 50), rng.random(50)) for k in range(8)}
    pl.save_roc(curves, tmp_path / "roc.png")
    fig = seen["fig"]
    r = fig.canvas.get_renderer()
    assert not fig.axes[0].get_legend().get_window_extent(r).overlaps(fig.axes[0].get_window_extent(r))
