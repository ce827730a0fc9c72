"""Pretrained weights: torchvision-format files, bundles, channel adaptation and clear errors."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision

from medattn.errors import ModelError
from medattn.models import create_model
from medattn.models import weights as W


@pytest.fixture(scope="module")
def tv_resnet18(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    torch.manual_seed(0)
    sd = torchvision.models.resnet18(num_classes=1000).state_dict()
    path = tmp_path_factory.mktemp("w") / "resnet18_tv.pth"
    torch.save(sd, path)
    return path, sd


def test_torchvision_state_dict_loads_into_attention_resnet(tv_resnet18: tuple[Path, dict]) -> None:
    path, sd = tv_resnet18
    model = create_model("resnet18", num_classes=4, attention="se", pretrained=str(path))
    rep = model.pretrained_report
    assert rep["mismatched"] == ["fc.bias", "fc.weight"]  # new head, not silently mismatched
    assert rep["unexpected"] == []
    assert rep["missing"] and all(".attn." in k or k.startswith("fc.") for k in rep["missing"])
    torch.testing.assert_close(model.layer3[1].conv2.weight, sd["layer3.1.conv2.weight"])
    assert not torch.equal(model.fc.weight[:4], sd["fc.weight"][:4])


def test_rgb_stem_is_adapted_to_one_channel(tv_resnet18: tuple[Path, dict]) -> None:
    path, sd = tv_resnet18
    model = create_model("resnet18", num_classes=2, in_chans=1, pretrained=str(path))
    assert model.pretrained_report["adapted"] == ["conv1.weight"]
    torch.testing.assert_close(model.conv1.weight, sd["conv1.weight"].sum(1, keepdim=True))


def test_medattn_safetensors_round_trip(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    src = create_model("unet", depth=2, width=4, skip_attention="gct")
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "model.safetensors"))
    dst = create_model("unet", depth=2, width=4, skip_attention="gct", pretrained=str(tmp_path))
    for k, v in src.state_dict().items():
        torch.testing.assert_close(dst.state_dict()[k], v)


def test_checkpoint_of_another_architecture_is_refused(tv_resnet18: tuple[Path, dict]) -> None:
    path, _ = tv_resnet18
    with pytest.raises(ModelError, match="checkpoint for another architecture"):
        create_model("unet", depth=2, width=4, pretrained=str(path))


def test_missing_weights_file() -> None:
    with pytest.raises(ModelError, match="not found"):
        create_model("resnet18", pretrained="/nonexistent/w.pth")


def test_imagenet_offline_names_the_cache_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def offline(*_a: object, **_k: object) -> None:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(ModelError) as err:
        create_model("resnet18", pretrained="imagenet")
    msg = str(err.value)
    assert "\n" not in msg
    assert str(tmp_path / "hub" / "checkpoints" / "resnet18-") in msg
    assert "https://download.pytorch.org/models/resnet18-" in msg


def test_imagenet_uses_torchvision_weights(monkeypatch: pytest.MonkeyPatch, tv_resnet18: tuple[Path, dict]) -> None:
    _, sd = tv_resnet18
    seen: list[str] = []

    def fake(url: str, **_k: object) -> dict:
        seen.append(url)
        return sd

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", fake)
    model = create_model("resnet18", num_classes=1000, pretrained="imagenet")
    assert seen and seen[0].endswith(".pth")
    torch.testing.assert_close(model.fc.weight, sd["fc.weight"])


def test_imagenet_not_available_for_unet() -> None:
    with pytest.raises(ModelError, match="no ImageNet weights"):
        create_model("unet", pretrained="imagenet")


def test_densenet_old_style_keys_are_renamed() -> None:
    sd = {"features.denseblock1.denselayer1.norm.1.weight": torch.ones(3)}
    assert list(W._normalise_keys(sd)) == ["features.denseblock1.denselayer1.norm1.weight"]
