"""Recipe validation: every shipped recipe parses; bad recipes give a one-line error naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from medattn.cli import main
from medattn.engine.config import RECIPE_DIR, apply_overrides, load_recipe, parse_overrides
from medattn.errors import ConfigError

RECIPES = sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def test_all_nine_recipes_ship() -> None:
    assert set(RECIPES) >= {
        "pcam-baseline", "pcam-attention", "sipakmed-cbam-resnet50", "oral-unet-none", "oral-unet-ag",
        "oral-unet-gct", "oral-unet-srm", "cxr14-agcnn", "idc-efficientnetv2s"}


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_validates(name: str) -> None:
    r = load_recipe(name)
    assert r.name == name and r.data.format and r.model.name


def test_published_idc_settings() -> None:
    r = load_recipe("idc-efficientnetv2s")
    assert (r.optimizer.name, r.optimizer.lr, r.scheduler.factor, r.scheduler.patience) == ("nadam", 2e-3, 0.3, 7)
    assert (r.trainer.early_stopping.patience, r.trainer.batch_size, r.data.image_size) == (12, 16, 384)


def test_overrides_parse_and_apply() -> None:
    ov = parse_overrides(["optimizer.lr=1e-3", "trainer.devices=2", "model.args.attention=cbam", "x.y=[1, 2]"])
    assert ov == {"optimizer.lr": 1e-3, "trainer.devices": 2, "model.args.attention": "cbam", "x.y": [1, 2]}
    assert apply_overrides({"a": {"b": 1}}, {"a.c.d": 2}) == {"a": {"b": 1, "c": {"d": 2}}}
    assert load_recipe("pcam-baseline", ["optimizer.lr=0.01"]).optimizer.lr == 0.01


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


BASE = "name: t\ntask: {type: binary}\ndata: {format: pcam}\nmodel: {name: patch_cnn_baseline}\n"


@pytest.mark.parametrize(("extra", "sets", "field"), [
    ("optimizer: {lr: 1e-3, lrr: 2}\n", [], "optimizer.lrr"),
    ("trainer: {max_epochs: many}\n", [], "trainer.max_epochs"),
    ("", ["scheduler.name=warm"], "scheduler.name"),
    ("", ["data.root=/does/not/exist"], "data.root"),
    ("", ["model.name=unet"], "model.name"),
    ("", ["model.name=no_such_net"], "model.name"),
    ("", ["task.type=multiclas"], "task.type"),
])
def test_bad_recipe_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str,
                                    sets: list[str], field: str) -> None:
    p = _write(tmp_path, BASE + extra)
    args = ["train", str(p), "--out", str(tmp_path / "run")]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert f"'{field}'" in err, err


def test_missing_data_path_names_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "pcam-baseline", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "data.root" in err and "--data" in err


def test_unknown_recipe_lists_shipped(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="pcam-baseline"):
        load_recipe("nope")
