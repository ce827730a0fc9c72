"""Every shipped recipe trains end to end in smoke mode on synthetic data in its real format."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from medattn.cli import main
from medattn.engine.config import RECIPE_DIR

RECIPES = sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))
RUN_FILES = ("recipe.yaml", "run.json", "split.csv", "training_history.csv", "training_history.png",
             "checkpoints/best.ckpt", "checkpoints/last.ckpt", "bundle/bundle.json", "bundle/model.safetensors",
             "metrics.json", "test_predictions.csv", "report.html")


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_smoke(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / name
    t0 = time.time()
    code = main(["train", name, "--smoke", "--out", str(out)])
    seconds = time.time() - t0
    assert code == 0, capsys.readouterr().err[-2000:]
    staged = name == "cxr14-agcnn"
    ckpt_dir = "checkpoints/stage_fusion" if staged else "checkpoints"
    for f in RUN_FILES:
        if staged and f == "checkpoints/last.ckpt":  # a finished stage keeps best.ckpt and DONE.json only
            f = "checkpoints/DONE.json"
        f = f.replace("checkpoints", ckpt_dir)
        assert (out / f).is_file(), f
    if staged:
        assert not list((out / "checkpoints").rglob("last.ckpt"))
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["split"] == "test"
    for v in doc["metrics"].values():
        assert {"value", "ci_low", "ci_high"} <= set(v)
    split = (out / "split.csv").read_text().splitlines()
    assert split[0] == "file,split,group,label"
    bundle = json.loads((out / "bundle" / "bundle.json").read_text())
    assert bundle["recipe"]["name"] == name
    print(f"\nsmoke {name}: {seconds:.1f} s")
    if name.startswith("oral-unet"):
        from PIL import Image

        gif = Image.open(out / "progress.gif")
        assert gif.n_frames == 2  # one fixed validation image per epoch
        assert len(list((out / "progress_frames").glob("*.png"))) == 2
        # instance post-processing chosen on validation, stored in the bundle and its recipe
        assert doc["postprocess"]["method"] in ("three_class", "watershed", "connected")
        assert doc["postprocess_chosen_on"].startswith(("validation split", "default"))
        assert bundle["postprocess"] == doc["postprocess"] == bundle["recipe"]["evaluation"]["postprocess"]
        assert doc["tiles"]["tile"] == bundle["recipe"]["data"]["image_size"]
        if name == "oral-unet-ag":  # the bundle alone re-scores the same test images identically
            from medattn.engine.evaluate_cli import evaluate_path

            data = json.loads((out / "run.json").read_text())["data"]
            again = evaluate_path(out / "bundle", data=data, out=tmp_path / "re")
            for k in ("dice", "aji", "pq"):
                assert again["metrics"][k]["value"] == pytest.approx(doc["metrics"][k]["value"], abs=1e-9), k
    if name == "cxr14-agcnn":
        for stage in ("global", "local", "fusion"):
            assert (out / "checkpoints" / f"stage_{stage}" / "DONE.json").is_file()
