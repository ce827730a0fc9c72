"""End to end on synthetic graded epithelium: the grade recipe trains and reports ordinal metrics,
a U-Net learns the tissue mask, and the chained pipeline is evaluated against the classifier
alone on the same test items and saved as a servable chained bundle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TINY = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "evaluation.n_boot=10", "data.max_items=16"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from medattn.data.synthetic import write_graded
    from medattn.engine.runner import train_run

    base = tmp_path_factory.mktemp("grade_e2e")
    data = write_graded(base / "graded", n_per_class=5, size=48, seed=2)
    grade = base / "grade"
    train_run("oral-grade-resnet", out=grade, data=data / "images", smoke=True, overrides=TINY)
    seg = base / "seg"
    train_run("oral-unet-none", out=seg, data=data, smoke=True,
              overrides=[*TINY, "task.seg_target=binary", "task.gif_every=0", "model.args.width=4",
                         "model.args.depth=2", "data.image_size=32"])
    return grade, seg


def test_grade_recipe_reports_ordinal_metrics(runs: tuple[Path, Path]) -> None:
    grade, _ = runs
    doc = json.loads((grade / "metrics.json").read_text())
    for k in ("accuracy", "macro_f1", "qwk", "linear_kappa", "mae_grade", "within_one"):
        assert k in doc["metrics"] and "ci_low" in doc["metrics"][k]
    assert (grade / "confusion_matrix.png").is_file()
    html = (grade / "report.html").read_text()
    assert "qwk" in html and 'id="overview"' in html and "Items per class and split" in html


def test_chained_pipeline_end_to_end(runs: tuple[Path, Path], tmp_path: Path) -> None:
    from medattn.bundle import load_bundle
    from medattn.cli import main

    grade, seg = runs
    out, chain = tmp_path / "eval", tmp_path / "chain"
    assert main(["pipeline", "evaluate", str(grade), "--segmenter", str(seg / "bundle"), "--mode", "dim",
                 "--n-boot", "20", "--out", str(out), "--save-chain", str(chain)]) == 0
    doc = json.loads((out / "chain_comparison.json").read_text())
    assert doc["ordinal"] and {"qwk", "accuracy", "macro_f1"} <= set(doc["metrics"])
    assert (out / "chain_comparison.html").is_file()
    split = (grade / "split.csv").read_text().splitlines()
    assert doc["n_items"] == sum(1 for r in split if ",test," in r)
    pred = load_bundle(chain)
    assert pred.meta["evaluation"]["n_items"] == doc["n_items"]
