"""Final models (``test_fraction: 0``) scored on external data with the bundle's own choices.

For each of the four task types a smoke recipe is trained without a test split; the bundle is then
evaluated on a second synthetic dataset written with another seed: every item of it must be
scored, with the threshold(s) / post-processing stored in the bundle (nothing re-fitted).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medattn.engine.config import load_recipe
from medattn.engine.evaluate_cli import evaluate_path
from medattn.engine.runner import train_run
from medattn.engine.smoke import write_smoke_data
from medattn.errors import BundleError, ConfigError

CASES = {  # recipe -> expected task of the bundle
    "idc-cpu": "binary",
    "sipakmed-cbam-resnet50": "multiclass",
    "cxr14-agcnn": "multilabel",
    "oral-unet-none": "segmentation",
}


def _n_items(fmt: str, root: Path) -> int:
    if fmt == "cxr14":
        return len((root / "Data_Entry_2017.csv").read_text().strip().splitlines()) - 1
    if fmt in ("seg_pairs",):
        return len(list((root / "images").glob("*.png")))
    return len([p for p in root.rglob("*.png")])


@pytest.fixture(scope="module")
def final_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("final")
    out = {}
    for name in CASES:
        run = base / name
        train_run(name, out=run, smoke=True, overrides=["data.split.test_fraction=0", "trainer.progress=false",
                                                        "evaluation.n_cams=0"])
        out[name] = run
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_final_model_then_external_evaluation(final_runs: dict[str, Path], tmp_path: Path, name: str) -> None:
    run = final_runs[name]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"] == "valid" and "no test split" in metrics["note"]
    split = (run / "split.csv").read_text()
    assert ",test," not in split  # train + valid only
    meta = json.loads((run / "bundle" / "bundle.json").read_text())
    assert meta["task"] == CASES[name]
    assert meta["training_data"]["splits"]["test"]["items"] == 0

    recipe = load_recipe(name)
    ext = write_smoke_data(recipe.data.format, tmp_path / "external", seed=11, class_names=meta["class_names"]
                           if recipe.data.format == "folders" else recipe.data.class_names, task=recipe.task.type)
    res = evaluate_path(run / "bundle", data=ext)
    assert res["external"] is True
    doc = json.loads((Path(res["out"]) / "metrics.json").read_text())
    assert doc["external"] is True and doc["split"] == "external" and doc["data"] == str(ext.resolve())
    assert doc["n_items"] == _n_items(recipe.data.format, ext)  # every item, no split of the new data
    assert doc["trained_on"] == meta["training_data"]["path"]
    if CASES[name] == "binary":
        assert doc["threshold"] == pytest.approx(meta["threshold"]) and "thresholds" not in doc
        assert set(doc["prevalence"]) == {"external", "training"}
        assert doc["prevalence"]["training"] == meta["training_data"]["prevalence_train"]
        assert doc["validation_calibration"]["ece"] == pytest.approx(meta["validation_calibration"]["ece"])
        assert "ece" in doc["calibration"]
    elif CASES[name] == "multilabel":
        assert list(doc["thresholds"].values()) == pytest.approx(meta["thresholds"])
    elif CASES[name] == "segmentation":
        assert doc["postprocess"] == meta["postprocess"]
        assert doc["chosen_by_bundle"]["postprocess"] == meta["postprocess"]
    for v in doc["metrics"].values():
        assert v["ci_low"] <= v["value"] <= v["ci_high"] or v["value"] != v["value"]
    rows = (Path(res["out"]) / "test_predictions.csv").read_text().strip().splitlines()
    assert len(rows) - 1 == doc["n_items"]


def test_external_class_mismatch_names_both_lists(final_runs: dict[str, Path], tmp_path: Path) -> None:
    run = final_runs["sipakmed-cbam-resnet50"]
    classes = json.loads((run / "bundle" / "bundle.json").read_text())["class_names"]
    ext = write_smoke_data("folders", tmp_path / "other", seed=3, class_names=["a", "b", "c"])
    with pytest.raises(BundleError) as e:
        evaluate_path(run / "bundle", data=ext)
    assert str(classes) in str(e.value) and "['a', 'b', 'c']" in str(e.value)


def test_validation_fraction_zero_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"val_fraction.*must be > 0"):
        load_recipe("idc-cpu", ["data.split.val_fraction=0"])


def test_final_model_on_its_own_data_says_what_to_do(final_runs: dict[str, Path]) -> None:
    run = final_runs["idc-cpu"]
    trained_on = json.loads((run / "bundle" / "bundle.json").read_text())["training_data"]["path"]
    with pytest.raises(ConfigError, match="no 'test' items.*--external"):
        evaluate_path(run / "bundle", data=trained_on)


def test_external_console_line_shows_auroc(final_runs: dict[str, Path], tmp_path: Path, capsys,
                                           monkeypatch) -> None:
    from medattn.cli import main

    monkeypatch.setattr("medattn.progress.EVERY_S", 0.0)  # a progress line at every chunk of files
    recipe = load_recipe("idc-cpu")
    ext = write_smoke_data(recipe.data.format, tmp_path / "external", seed=12, class_names=recipe.data.class_names)
    assert main(["evaluate", str(final_runs["idc-cpu"] / "bundle"), "--data", str(ext),
                 "--out", str(tmp_path / "ev")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    line = next(ln for ln in out if ln.startswith("external ("))
    assert "balanced_accuracy " in line and "auroc " in line
    assert out[-1].startswith("prediction sets: ")  # whether the conformal coverage held on this data
    n = int(line.split("(")[1].split()[0])
    assert any(ln.startswith("external evaluation (") and ln.endswith(" …") for ln in out)  # the phase starts
    assert any(ln.startswith(f"predicting {n} files") and f"{n}/{n} (100%)" in ln for ln in out)  # and counts
