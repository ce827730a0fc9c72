"""CLI verbs of the metrics area: compare and seg-metrics."""

from __future__ import annotations

import csv
import json

import numpy as np
from PIL import Image

from medattn.cli import main


def _preds(path, y, p, files=None) -> None:
    files = files or [f"f{i}.png" for i in range(len(y))]
    rows = ["file,group,true_label,prob_tumour,predicted_label"]
    rows += [f"{f},,{a},{b:.5f},{int(b >= 0.5)}" for f, a, b in zip(files, y, p, strict=True)]
    path.mkdir(parents=True, exist_ok=True)
    (path / "test_predictions.csv").write_text("\n".join(rows) + "\n")


def test_compare_prints_table_and_writes_json(tmp_path, capsys) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 80)
    _preds(tmp_path / "base", y, np.clip(0.5 + (y - 0.5) * 0.2 + rng.normal(0, 0.3, 80), 0, 1))
    _preds(tmp_path / "attn", y, np.clip(0.5 + (y - 0.5) * 0.8 + rng.normal(0, 0.1, 80), 0, 1))
    out = tmp_path / "cmp.json"
    code = main(["compare", str(tmp_path / "base"), str(tmp_path / "attn"), "--n-boot", "50", "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "auroc" in text and "95% CI" in text and "resampling items" in text
    res = json.loads(out.read_text())
    assert res["metrics"]["auroc"]["diff"] > 0 and res["metrics"]["auroc"]["n_boot"] == 50


def test_compare_refuses_different_items(tmp_path, capsys) -> None:
    y = np.array([0, 1, 0, 1])
    _preds(tmp_path / "a", y, y * 0.8)
    _preds(tmp_path / "b", y, y * 0.8, files=["x.png", "f1.png", "f2.png", "f3.png"])
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--n-boot", "10"]) == 2
    err = capsys.readouterr().err.strip()
    assert "different items" in err and "\n" not in err
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "nothing")]) == 2
    assert "not found" in capsys.readouterr().err


def test_seg_metrics_writes_per_image_csv(tmp_path, capsys) -> None:
    t, p = tmp_path / "gt", tmp_path / "pred"
    t.mkdir()
    p.mkdir()
    true = np.zeros((32, 32), np.uint16)
    true[2:10, 2:10] = 4
    true[15:25, 15:25] = 9
    pred = np.zeros_like(true)
    pred[2:10, 3:10] = 1
    Image.fromarray(true).save(t / "a.png")
    Image.fromarray(pred).save(p / "pred_a.png")
    out = tmp_path / "seg.csv"
    assert main(["seg-metrics", str(t), str(p), "--pred-prefix", "pred_", "--out", str(out)]) == 0
    row = next(csv.DictReader(out.open()))
    assert row["image"] == "a" and row["n_true"] == "2" and row["n_pred"] == "1"
    assert float(row["dq"]) == 1 / (1 + 0.5)
    assert main(["seg-metrics", str(t), str(p), "--out", str(out)]) == 2
    assert "lacks predictions" in capsys.readouterr().err
