"""Model card and `medattn info`: readable sizes, the recipe's intended use, the run's --set
overrides, the decision threshold and what chose it, tiling (not resizing) for segmentation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from medattn.engine.config import list_recipes, load_recipe
from medattn.trust.card import build_card, decision_text, format_card
from medattn.trust.contract import size_text

IDC_CONTRACT = {"n_sampled": 300, "in_chans": 3, "input_size": 50, "height": [27, 50, 50], "width": [27, 50, 50],
                "aspect": [0.54, 1.85], "colour": "colour", "chroma": [0.1, 0.2, 0.3],
                "channel_mean": [[0.5, 0.7, 0.9]] * 3, "contrast": [0.05, 0.1, 0.2], "resolution": {"mpp": 4.0},
                "quantiles": [0.005, 0.5, 0.995]}


def _meta(recipe: Any, **kw: Any) -> dict[str, Any]:
    return {"task": "binary", "class_names": ["non-IDC", "IDC"], "input_size": 50, "in_chans": 3,
            "mean": [0.5] * 3, "std": [0.25] * 3, "threshold": 0.3, "contract": IDC_CONTRACT,
            "recipe": recipe.model_dump(mode="json"),
            "training_data": {"format": "idc", "path": "/d/IDC", "splits": {"train": {"items": 10, "groups": 40},
                                                                          "test": {"items": 5, "groups": 9}}},
            **kw}


def test_sizes_read_as_a_size_and_a_range() -> None:
    assert size_text(IDC_CONTRACT) == "50×50 px (27–50 px on a side in the training data)"
    assert size_text({"height": [96, 96, 96], "width": [96, 96, 96]}) == "96×96 px"
    card = build_card(_meta(load_recipe("idc-cpu")))
    text = format_card(card)
    assert "27–50 × " not in text and "50–50" not in text
    assert "Trained on 50×50 px (27–50 px on a side in the training data) colour images resized to 50 px" in text


def test_overrides_are_recorded_with_the_recipe_value(tmp_path: Path) -> None:
    from medattn.engine.config import recipe_from_dict, recipe_to_yaml
    from medattn.engine.runner import resolve_recipe

    r = resolve_recipe("idc-cpu", ["trainer.max_epochs=2", "optimizer.lr=3e-4", "trainer.monitor=val_acc"])
    assert r.trainer.max_epochs == 2
    assert r.overrides == ["trainer.max_epochs=2 (recipe: 16)", "optimizer.lr=0.0003 (recipe: 0.001)",
                           "trainer.monitor=val_acc (recipe: null)"]
    assert load_recipe("idc-cpu").overrides == []
    again = recipe_from_dict(__import__("yaml").safe_load(recipe_to_yaml(r)))  # recipe.yaml keeps them (resume)
    assert again.overrides == r.overrides
    f = tmp_path / "r.yaml"
    f.write_text(recipe_to_yaml(r))
    assert load_recipe(f, ["trainer.batch_size=8"]).overrides[-1] == "trainer.batch_size=8 (recipe: 64)"
    text = format_card(build_card(_meta(r)))
    assert "Recipe: idc-cpu, changed for this run by --set trainer.max_epochs=2 (recipe: 16)" in text
    assert "The run changed the recipe 'idc-cpu' (--set): trainer.max_epochs=2 (recipe: 16);" in text


def test_decision_threshold_and_what_chose_it() -> None:
    idc = _meta(load_recipe("idc-cpu"))
    assert decision_text(idc) == ("IDC when P(IDC) ≥ 0.300, else non-IDC; threshold chosen by Youden's J "
                                  "(sensitivity + specificity − 1, maximised) on the validation split")
    herlev = {**idc, "task": "multiclass", "class_names": ["a", "b", "c"], "threshold": None,
              "positive_view": {"name": "abnormal", "classes": ["b", "c"], "threshold": 0.42,
                                "threshold_method": "youden on validation"}}
    assert decision_text(herlev) == ("the class with the highest probability; abnormal (b, c) when their summed "
                                     "probability ≥ 0.420, threshold youden on validation")
    ml = {**idc, "task": "multilabel", "class_names": ["x", "y"], "thresholds": [0.2, 0.7]}
    assert decision_text(ml).endswith("on the validation split): x 0.200, y 0.700")


def test_intended_use_comes_from_the_recipe_card() -> None:
    r = load_recipe("idc-cpu")
    card = build_card(_meta(r))
    assert card["intended_use"] == r.card.intended_use and card["intended_use"] != r.description
    assert "invasive ductal carcinoma" in card["intended_use"]
    assert card["limitations"][: len(r.card.limitations)] == r.card.limitations


@pytest.mark.parametrize("path", list_recipes(), ids=lambda p: p.stem)
def test_every_shipped_recipe_states_its_intended_use(path: Path) -> None:
    r = load_recipe(path)
    assert r.card.intended_use.startswith("Research: ") and len(r.card.intended_use) > 60
    assert r.card.intended_use != r.description and len(r.card.limitations) >= 2


def test_card_section_is_validated() -> None:
    from medattn.engine.config import recipe_from_dict
    from medattn.errors import ConfigError

    raw = load_recipe("idc-cpu").model_dump(mode="json")
    raw["card"] = {"intended_use": "x", "limitations": ["ok", "  "]}
    with pytest.raises(ConfigError, match="field 'card.limitations'"):
        recipe_from_dict(raw)
    raw["card"] = {"intended_use": "x", "purpose": "y"}
    with pytest.raises(ConfigError, match="field 'card.purpose'"):
        recipe_from_dict(raw)


def test_segmentation_card_says_tiles_not_resized() -> None:
    r = load_recipe("nuclei-cpu")
    meta = {"task": "segmentation", "class_names": ["background", "inside", "boundary"], "input_size": 256,
            "in_chans": 3, "recipe": r.model_dump(mode="json"), "postprocess": {"method": "three_class"},
            "contract": {**IDC_CONTRACT, "height": [1000, 1000, 1000], "width": [1000, 1000, 1000]}}
    text = format_card(build_card(meta))
    assert "resized to 256" not in text
    assert "Trained on random 256 px crops of 1000×1000 px colour images" in text
    assert "predicted by overlapping 256 px tiles" in text
    assert "Decision: each pixel takes its likeliest class; instances by the 'three_class' post-processing" in text


def test_cli_info_states_decision_input_and_overrides(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medattn.bundle import save_bundle
    from medattn.cli import app
    from medattn.engine.runner import resolve_recipe
    from medattn.models import create_model

    torch.manual_seed(0)
    r = resolve_recipe("idc-cpu", ["trainer.max_epochs=2"])
    b = save_bundle(create_model("patch_cnn_baseline", width=0.125), _meta(r), tmp_path / "bundle")
    res = CliRunner().invoke(app, ["info", str(b)])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "Intended use: Research: classify 50×50 px H&E patches" in out
    assert "Decision: IDC when P(IDC) ≥ 0.300, else non-IDC; threshold chosen by Youden's J" in out
    assert "Input: images resized to 50 px, 3 channel(s)" in out
    assert "--set trainer.max_epochs=2 (recipe: 16)" in out
    assert "Input contract: trained on 50×50 px (27–50 px on a side in the training data) colour images" in out
    assert "27–50 × 50–50" not in out
