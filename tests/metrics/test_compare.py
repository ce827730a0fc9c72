"""Paired bootstrap comparison of two runs' predictions."""

from __future__ import annotations

import numpy as np
import pytest

from medattn.errors import DataError
from medattn.metrics.compare import compare_prediction_tables, paired_bootstrap


def _write(path, files, groups, y, p, thr=0.5) -> None:
    lines = ["file,group,label,prob_tumour,prediction"]
    lines += [f"{f},{g},{a},{b:.6f},{int(b >= thr)}" for f, g, a, b in zip(files, groups, y, p, strict=True)]
    path.write_text("\n".join(lines) + "\n")


def test_paired_bootstrap_detects_a_real_difference_and_not_a_null_one() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, 200)
    better = x + 0.5 + rng.normal(0, 0.2, 200)
    res = paired_bootstrap(lambda i: {"m": float(x[i].mean())}, lambda i: {"m": float(better[i].mean())},
                           200, n_boot=300)["m"]
    assert res["diff"] == pytest.approx(better.mean() - x.mean())
    assert res["ci_low"] > 0 and res["p_value"] < 0.01
    same = x + rng.normal(0, 0.2, 200)
    null = paired_bootstrap(lambda i: {"m": float(x[i].mean())}, lambda i: {"m": float(same[i].mean())},
                            200, n_boot=300)["m"]
    assert null["ci_low"] < 0 < null["ci_high"] and null["p_value"] > 0.05
    # the paired interval is much narrower than the unpaired spread of either model
    assert (res["ci_high"] - res["ci_low"]) < 0.5 * 4 * x.std() / np.sqrt(200)


def test_compare_tables(tmp_path) -> None:
    rng = np.random.default_rng(1)
    n = 120
    files = [f"img_{i}.png" for i in range(n)]
    groups = [f"p{i // 4}" for i in range(n)]
    y = rng.integers(0, 2, n)
    pa = np.clip(0.5 + (y - 0.5) * 0.3 + rng.normal(0, 0.25, n), 0, 1)
    pb = np.clip(0.5 + (y - 0.5) * 0.8 + rng.normal(0, 0.15, n), 0, 1)
    (tmp_path / "a").mkdir()
    _write(tmp_path / "a" / "test_predictions.csv", files, groups, y, pa)
    order = rng.permutation(n)  # B lists the same items in another order
    _write(tmp_path / "b.csv", [files[i] for i in order], [groups[i] for i in order], y[order], pb[order])
    res = compare_prediction_tables(tmp_path / "a", tmp_path / "b.csv", n_boot=100)
    assert res["resampled"] == "groups" and res["n_groups"] == 30
    auc = res["metrics"]["auroc"]
    assert auc["diff"] > 0 and auc["ci_low"] > 0 and auc["p_value"] < 0.05
    from sklearn.metrics import roc_auc_score

    assert auc["value_a"] == pytest.approx(roc_auc_score(y, pa), abs=1e-6)
    assert auc["value_b"] == pytest.approx(roc_auc_score(y, pb), abs=1e-6)
    # different items are refused
    _write(tmp_path / "c.csv", files[:-1] + ["other.png"], groups, y, pb)
    with pytest.raises(DataError, match="different items"):
        compare_prediction_tables(tmp_path / "a", tmp_path / "c.csv", n_boot=10)
    _write(tmp_path / "d.csv", files, groups, 1 - y, pb)
    with pytest.raises(DataError, match="labels"):
        compare_prediction_tables(tmp_path / "a", tmp_path / "d.csv", n_boot=10)
    with pytest.raises(DataError, match="not found"):
        compare_prediction_tables(tmp_path / "missing", tmp_path / "d.csv")


def test_compare_multiclass_tables(tmp_path) -> None:
    rng = np.random.default_rng(2)
    n = 60
    y = rng.integers(0, 3, n)
    for name, sharp in (("a.csv", 0.5), ("b.csv", 3.0)):
        logits = rng.normal(0, 1, (n, 3)) + sharp * np.eye(3)[y]
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        rows = ["file,group,label,prob_x,prob_y,prob_z,prediction"]
        rows += [f"f{i},,{'xyz'[y[i]]},{p[i, 0]},{p[i, 1]},{p[i, 2]},{'xyz'[p[i].argmax()]}" for i in range(n)]
        (tmp_path / name).write_text("\n".join(rows) + "\n")
    res = compare_prediction_tables(tmp_path / "a.csv", tmp_path / "b.csv", n_boot=100)
    assert res["resampled"] == "items"
    assert res["metrics"]["macro_auroc"]["diff"] > 0


def test_compare_multilabel_tables(tmp_path) -> None:
    from sklearn.metrics import f1_score, roc_auc_score

    rng = np.random.default_rng(3)
    n, k = 80, 4
    y = (rng.random((n, k)) < 0.3).astype(int)
    y[0], y[1] = 1, 0  # every finding has both classes
    tables = {}
    for name, sharp in (("a.csv", 0.3), ("b.csv", 2.5)):
        p = 1 / (1 + np.exp(-(rng.normal(0, 1, (n, k)) + sharp * (2 * y - 1))))
        hard = (p >= 0.5).astype(int)
        rows = ["file,group,label," + ",".join(f"prob_f{j}" for j in range(k)) + ",prediction"]
        rows += [f"i{i},p{i // 2},{''.join(map(str, y[i]))},{','.join(f'{v:.6f}' for v in p[i])},"
                 f"{''.join(map(str, hard[i]))}" for i in range(n)]
        (tmp_path / name).write_text("\n".join(rows) + "\n")
        tables[name] = (p, hard)
    res = compare_prediction_tables(tmp_path / "a.csv", tmp_path / "b.csv", n_boot=200)
    assert res["resampled"] == "groups" and res["n_groups"] == 40
    m = res["metrics"]
    for name, key in (("a.csv", "value_a"), ("b.csv", "value_b")):
        p, hard = tables[name]
        assert m["mean_auroc"][key] == pytest.approx(np.mean([roc_auc_score(y[:, j], p[:, j]) for j in range(k)]))
        assert m["macro_f1"][key] == pytest.approx(np.mean([f1_score(y[:, j], hard[:, j]) for j in range(k)]))
        assert m["auroc_f2"][key] == pytest.approx(roc_auc_score(y[:, 2], p[:, 2]))
    assert m["mean_auroc"]["diff"] > 0.2 and m["mean_auroc"]["ci_low"] > 0
    rows = (tmp_path / "a.csv").read_text().splitlines()
    rows[1] = rows[1].rsplit(",", 1)[0] + ",01"  # prediction with the wrong number of findings
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match="one 0/1 character per finding"):
        compare_prediction_tables(tmp_path / "d.csv", tmp_path / "b.csv", n_boot=10)
