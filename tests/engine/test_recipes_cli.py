"""`medattn recipes` (list / show / schema): shipped as package data, schema derived from pydantic."""

from __future__ import annotations

import yaml

from medattn.cli import main
from medattn.engine.config import RECIPE_DIR, list_recipes, load_recipe
from medattn.engine.recipe_schema import recipe_schema, schema_sections


def test_recipes_are_package_data() -> None:
    assert RECIPE_DIR.parts[-2:] == ("medattn", "recipes")
    names = {p.stem for p in list_recipes()}
    assert {"pcam-attention", "cxr14-agcnn", "idc-efficientnetv2s"} <= names


def test_recipes_lists_every_shipped_recipe(capsys) -> None:
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert sorted(line.split()[0] for line in out) == sorted(p.stem for p in list_recipes())
    assert main(["recipes", "list"]) == 0
    assert capsys.readouterr().out.splitlines() == out


def test_recipes_show_prints_the_yaml(capsys) -> None:
    assert main(["recipes", "show", "pcam-attention"]) == 0
    text = capsys.readouterr().out
    assert text == (RECIPE_DIR / "pcam-attention.yaml").read_text(encoding="utf-8")
    assert yaml.safe_load(text)["name"] == "pcam-attention"


def test_recipes_show_unknown_is_one_line_exit_2(capsys) -> None:
    assert main(["recipes", "show", "pcam-atention"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "recipe 'pcam-atention' not found" in err and "pcam-attention" in err


def test_schema_rows_follow_the_models(capsys) -> None:
    rows = {r.key: r for r in recipe_schema("trainer")}
    assert rows["trainer.max_epochs"].type == "int (>=1)" and rows["trainer.max_epochs"].default == "20"
    assert rows["trainer.precision"].type == "32|32-true|16-mixed|bf16-mixed|auto|fast"
    assert "16-mixed on CUDA" in rows["trainer.precision"].doc  # attribute docstring
    assert "trainer.early_stopping.patience" in rows  # nested section expanded
    data = {r.key: r for r in recipe_schema("data")}
    assert data["data.format"].default == "required" and "data.split.seed" in data
    assert {r.key for r in recipe_schema("recipe")} == {"name", "description", "smoke", "overrides"}
    assert schema_sections()[:3] == ["recipe", "task", "data"]
    assert main(["recipes", "schema", "evaluation"]) == 0
    out = capsys.readouterr().out
    assert "evaluation.n_boot" in out and "Youden" in out


def test_schema_unknown_section_one_line(capsys) -> None:
    assert main(["recipes", "schema", "trainr"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown recipe section 'trainr'" in err and "trainer" in err and "\n" not in err


def test_unknown_key_hint_points_to_existing_command(capsys) -> None:
    import pytest

    from medattn.errors import ConfigError

    with pytest.raises(ConfigError) as exc:
        load_recipe("pcam-attention", ["trainer.max_epoch=3"])
    msg = str(exc.value)
    assert "trainer.max_epoch" in msg and "`medattn recipes schema trainer`" in msg
    # the hinted command works and lists the right spelling
    assert main(["recipes", "schema", "trainer"]) == 0
    assert "trainer.max_epochs" in capsys.readouterr().out
