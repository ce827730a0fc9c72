"""Every registered model: forward, backward, output shape, eval determinism; registry errors."""

from __future__ import annotations

import pytest
import torch

from medattn.errors import ModelError
from medattn.models import create_model, list_models, model_task

# small, CPU-friendly settings per model (everything else uses the builder defaults)
SMALL: dict[str, dict] = {
    "agcnn": {"crop_size": 64},
    "unet": {"depth": 3, "width": 8},
}


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_and_eval_determinism(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, **SMALL.get(name, {}))
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    expected = (2, 3, 64, 64) if model_task(name) == "segmentation" else (2, 3)
    assert tuple(out.shape) == expected
    out.float().square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)
    assert model.medattn_spec["name"] == name


def test_tasks_are_declared() -> None:
    assert model_task("unet") == "segmentation"
    assert model_task("agcnn") == "agcnn"
    assert {"resnet18", "resnet34", "resnet50", "cbam_resnet50", "efficientnet_v2_s", "densenet121"} <= set(
        list_models(task="classification")
    )


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(ModelError, match="unknown model 'resnet51'.*cbam_resnet50.*unet"):
        create_model("resnet51")


@pytest.mark.parametrize("bad", [0, -2, 1.5])
def test_num_classes_must_be_positive_int(bad: object) -> None:
    with pytest.raises(ModelError, match="num_classes must be an integer >= 1"):
        create_model("resnet18", num_classes=bad)


def test_unknown_argument_is_named() -> None:
    with pytest.raises(ModelError, match="does not take placment"):
        create_model("resnet18", placment="stage")
