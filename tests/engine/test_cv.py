"""Grouped K-fold cross-validation (``medattn train RECIPE --folds K``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medattn.engine.config import load_recipe
from medattn.engine.cv import cross_validate, fold_tables, summarise_folds
from medattn.engine.smoke import write_smoke_data
from medattn.errors import ConfigError


def _table(n_groups: int = 30, per: int = 4, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        for i in range(per):
            rows.append({"file": f"p{g}/img{i}.png", "group": f"p{g}", "label": int(rng.random() < 0.4)})
    return pd.DataFrame(rows)


def test_fold_tables_hold_out_whole_groups_and_keep_test_untouched() -> None:
    recipe = load_recipe("idc-cpu", ["data.split.test_fraction=0.2"])
    table = _table()
    base, splits = fold_tables(table, recipe, 4)
    test_files = set(base.loc[base["fold"] < 0, "file"])
    assert test_files and len(test_files) == pytest.approx(0.2 * len(table), abs=2 * 4)
    seen_test: list[str] = []
    for k, st in enumerate(splits):
        assert set(st["split"]) == {"train", "valid", "test"}
        assert not set(st["file"]) & test_files  # the recipe's test split is never used
        held = st[st["split"] == "test"]
        assert set(held["file"]) == set(base.loc[base["fold"] == k, "file"])
        by_group = st.groupby("group")["split"].nunique()
        assert (by_group == 1).all()  # no patient on two sides inside a fold
        seen_test += list(held["file"])
    assert sorted(seen_test) == sorted(set(table["file"]) - test_files)  # every CV item scored once


def test_final_cv_uses_every_item() -> None:
    recipe = load_recipe("idc-cpu", ["data.split.test_fraction=0"])
    base, splits = fold_tables(_table(), recipe, 3)
    assert (base["fold"] >= 0).all()
    assert sum(int((st["split"] == "test").sum()) for st in splits) == len(base)


def test_summary_t_interval_against_scipy() -> None:
    from scipy import stats

    vals = [0.81, 0.84, 0.79, 0.88, 0.83]
    s = summarise_folds([{"auroc": v} for v in vals])["auroc"]
    lo, hi = stats.t.interval(0.95, len(vals) - 1, loc=np.mean(vals), scale=stats.sem(vals))
    assert s["mean"] == pytest.approx(np.mean(vals))
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((lo, hi))


def test_fewer_than_five_folds_report_the_pooled_bootstrap_ci() -> None:
    # the 2-fold IDC figures of docs/results.md: BA 0.821 / 0.774 gave the t-interval [0.501, 1.093]
    folds = [{"balanced_accuracy": 0.821, "recall": 0.80, "abnormal_specificity": 0.97, "qwk": -0.9},
             {"balanced_accuracy": 0.774, "recall": 0.78, "abnormal_specificity": 0.99, "qwk": -0.7}]
    pooled = {"balanced_accuracy": {"value": 0.797, "ci_low": 0.776, "ci_high": 0.819},
              "sensitivity": {"value": 0.790, "ci_low": 0.749, "ci_high": 0.826}}
    s = summarise_folds(folds, pooled=pooled)
    ba = s["balanced_accuracy"]
    assert ba["mean"] == pytest.approx(0.7975) and ba["folds"] == [0.821, 0.774]
    assert (ba["value"], ba["ci_low"], ba["ci_high"]) == (0.797, 0.776, 0.819)
    assert ba["interval"] == "pooled out-of-fold bootstrap CI (2 folds, fewer than 5)"
    assert (s["recall"]["ci_low"], s["recall"]["ci_high"]) == (0.749, 0.826)  # pooled 'sensitivity'
    spec = s["abnormal_specificity"]  # not pooled: the t-interval, clipped to the metric's range
    assert spec["value"] == pytest.approx(0.98) and spec["ci_high"] == 1.0 and spec["ci_low"] < 0.9
    assert spec["interval"] == "t-interval of the mean across 2 folds, clipped to [0, 1]"
    assert s["qwk"]["ci_low"] == -1.0 and s["qwk"]["ci_high"] > 0  # kappa lives in [-1, 1]
    for m in s.values():
        assert -1 <= m["ci_low"] <= m["value"] <= m["ci_high"] <= 1


def test_five_folds_keep_the_t_interval_within_range() -> None:
    s = summarise_folds([{"auroc": v, "mae_grade": w} for v, w in
                         zip([0.99, 0.97, 1.0, 0.92, 1.0], [0.1, 0.5, 0.05, 0.3, 0.02], strict=True)],
                        pooled={"auroc": {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6}})
    assert s["auroc"]["value"] == pytest.approx(0.976) and s["auroc"]["ci_high"] == 1.0  # pooled not used
    assert s["auroc"]["interval"] == "t-interval of the mean across 5 folds, clipped to [0, 1]"
    assert s["mae_grade"]["ci_low"] == 0.0 and s["mae_grade"]["ci_high"] > 0.3  # errors: [0, inf)


def test_two_fold_cv_prints_pooled_intervals(tmp_path: Path, capsys) -> None:
    from medattn.cli import main

    assert main(["train", "idc-cpu", "--smoke", "--folds", "2", "--out", str(tmp_path / "cv"),
                 "--set", "trainer.progress=false", "--set", "evaluation.n_cams=0",
                 "--set", "data.split.test_fraction=0"]) == 0
    out = capsys.readouterr().out
    s = json.loads((tmp_path / "cv" / "cv_summary.json").read_text())
    for name in ("balanced_accuracy", "auroc", "f1", "recall", "specificity"):
        m, p = s["metrics"][name], s["pooled"][name if name != "recall" else "sensitivity"]
        assert (m["value"], m["ci_low"], m["ci_high"]) == (p["value"], p["ci_low"], p["ci_high"])
        assert "pooled out-of-fold bootstrap CI (2 folds" in m["interval"]
        assert f"  {name:<20} {m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]  (pooled" in out
    for m in s["metrics"].values():
        lo, hi = m["ci_low"], m["ci_high"]
        assert lo != lo or (0 <= lo <= hi <= 1)
    csv = (tmp_path / "cv" / "cv_summary.csv").read_text().splitlines()
    assert csv[0].startswith("metric,value,ci_low,ci_high,interval,mean,sd,fold_0,fold_1")

    # an interrupted cross-validation (fold 1 never ran): --resume keeps fold 0 and trains fold 1
    import shutil

    cv = tmp_path / "cv"
    kept = (cv / "fold_0" / "summary.json").stat().st_mtime_ns
    for f in ("cv_summary.json", "cv_summary.csv"):
        (cv / f).unlink()
    shutil.rmtree(cv / "fold_1")
    assert main(["train", "--resume", str(cv)]) == 0
    again = json.loads((cv / "cv_summary.json").read_text())
    assert (cv / "fold_0" / "summary.json").stat().st_mtime_ns == kept
    assert (cv / "fold_1" / "summary.json").is_file()
    assert again["metrics"]["auroc"]["folds"][0] == s["metrics"]["auroc"]["folds"][0]
    assert "cross-validation" in capsys.readouterr().out
    # a finished one is not resumed, and a plain run folder is not a cross-validation
    assert main(["train", "--resume", str(cv)]) == 2
    assert "already holds a cross-validation" in capsys.readouterr().err


def test_folds_must_be_two_or_more() -> None:
    with pytest.raises(ConfigError, match="--folds must be >= 2"):
        fold_tables(_table(), load_recipe("idc-cpu"), 1)


@pytest.mark.slow
def test_cross_validation_run_and_paired_compare(tmp_path: Path) -> None:
    from medattn.metrics.compare import compare_prediction_tables

    data = write_smoke_data("idc", tmp_path / "data", seed=0)
    over = ["trainer.progress=false", "evaluation.n_cams=0", "data.split.test_fraction=0"]
    a = cross_validate("idc-cpu", out=tmp_path / "a", folds=2, data=data, smoke=True, overrides=over)
    b = cross_validate("idc-cpu-cbam", out=tmp_path / "b", folds=2, data=data, smoke=True, overrides=over)
    for s, d in ((a, tmp_path / "a"), (b, tmp_path / "b")):
        assert (d / "fold_0" / "bundle" / "bundle.json").is_file() and (d / "fold_1" / "metrics.json").is_file()
        oof = pd.read_csv(d / "test_predictions.csv")
        assert len(oof) == s["items"] == 72 and oof["file"].is_unique
        assert set(oof["fold"]) == {0, 1}
        fold_auc = [json.loads((d / f"fold_{k}" / "metrics.json").read_text())["metrics"]["auroc"]["value"]
                    for k in range(2)]
        assert s["metrics"]["auroc"]["folds"] == pytest.approx(fold_auc)
    res = compare_prediction_tables(tmp_path / "a", tmp_path / "b", n_boot=50)
    assert res["n_items"] == 72

    from medattn.bundle import load_bundle
    from medattn.engine.cv import ensemble_bundle
    from medattn.metrics.threshold import choose_threshold

    out = ensemble_bundle(tmp_path / "b", tmp_path / "ens")
    oof = pd.read_csv(tmp_path / "b" / "test_predictions.csv")
    assert out["threshold"] == pytest.approx(choose_threshold(oof["true_label"].to_numpy(), oof["prob_IDC"].to_numpy()))
    ens = load_bundle(tmp_path / "ens")
    members = [load_bundle(tmp_path / "b" / f"fold_{k}" / "bundle") for k in range(2)]
    import torch

    x = torch.randn(3, 3, 50, 50)
    want = np.mean([m.predict_tensor(x) for m in members], 0)
    assert np.allclose(ens.predict_tensor(x), want, atol=1e-5)


def test_compare_segmentation_runs_pairs_images(tmp_path: Path) -> None:
    from medattn.metrics.compare import compare_prediction_tables

    rng = np.random.default_rng(0)
    files = [f"img{i}.png" for i in range(8)]
    a = pd.DataFrame({"file": files, "group": files, "dice": rng.uniform(0.6, 0.8, 8), "aji": rng.uniform(0.4, 0.6, 8),
                      "pq": rng.uniform(0.3, 0.5, 8)})
    b = a.copy()
    b[["dice", "aji", "pq"]] += 0.05
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a.to_csv(tmp_path / "a" / "test_predictions.csv", index=False)
    b.sample(frac=1, random_state=1).to_csv(tmp_path / "b" / "test_predictions.csv", index=False)  # other order
    res = compare_prediction_tables(tmp_path / "a", tmp_path / "b", n_boot=200)
    for k in ("dice", "aji", "pq"):
        m = res["metrics"][k]
        assert m["value_a"] == pytest.approx(a[k].mean()) and m["diff"] == pytest.approx(0.05)
        assert m["ci_low"] == pytest.approx(0.05) and m["ci_high"] == pytest.approx(0.05)


@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_ensemble_returns_logits_of_the_mean_probability(activation: str) -> None:
    import torch

    from medattn.models import create_model, model_spec

    k = 1 if activation == "sigmoid" else 4
    member = create_model("patch_cnn_baseline", num_classes=k, width=0.25)
    ens = create_model("ensemble", member=model_spec(member), n_members=3, activation=activation).eval()
    torch.manual_seed(0)
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        if activation == "sigmoid":
            want = torch.stack([torch.sigmoid(m(x)) for m in ens.members]).mean(0)
            got = torch.sigmoid(ens(x))
        else:
            want = torch.stack([torch.softmax(m(x), 1) for m in ens.members]).mean(0)
            got = torch.softmax(ens(x), 1)
    assert torch.allclose(got, want, atol=1e-5)


def test_warmup_ema_forgets_the_initial_weights_on_short_schedules() -> None:
    import torch

    from medattn.engine.fit import warmup_ema

    fn = warmup_ema(0.998)
    avg = torch.zeros(1)  # the initial weights
    for n in range(1, 240):  # a short run: 240 steps, far fewer than 1 / (1 - 0.998) = 500
        avg = fn(avg, torch.ones(1), torch.tensor(n))
    plain = 0.998 ** 239  # share of the initial weights a plain EMA would keep
    assert plain > 0.6 and float(1 - avg) < 0.25 * plain  # warmed up: the init is mostly forgotten
    # later steps average with the full decay
    assert float(fn(torch.zeros(1), torch.ones(1), torch.tensor(10_000))) == pytest.approx(0.002)
