"""``medattn.explain.explain`` on bundles and the ``medattn explain`` verb."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from medattn.cli import main
from medattn.errors import ConfigError


def _bundle(root: Path, task: str, classes: list[str], num_classes: int) -> Path:
    from medattn.bundle import save_bundle
    from medattn.models import create_model

    torch.manual_seed(0)
    model = create_model("patch_cnn_attention", width=0.25, num_classes=num_classes)
    return save_bundle(model, {"task": task, "class_names": classes, "input_size": 32, "in_chans": 3,
                               "mean": [0.5] * 3, "std": [0.25] * 3}, root / f"bundle_{task}")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(d / f"case{i}.png")
    return d


def test_multilabel_gives_one_map_per_finding(tmp_path: Path, images: Path) -> None:
    from medattn.explain import explain

    b = _bundle(tmp_path, "multilabel", ["Effusion", "Mass", "Nodule"], 3)
    res = explain(b, sorted(images.glob("*.png")), target="all")
    assert [(e.source, e.class_name) for e in res] == [
        (s, c) for s in ("case0", "case1") for c in ("Effusion", "Mass", "Nodule")]
    assert all(e.heatmap.shape == (32, 32) and e.heatmap_at().shape == (40, 48) for e in res)
    one = explain(b, [sorted(images.glob("*.png"))[0]], target="Mass", method="attention")
    assert len(one) == 1 and one[0].method == "attention" and one[0].layer.endswith("spatial")
    with pytest.raises(ConfigError, match="Effusion, Mass, Nodule"):
        explain(b, sorted(images.glob("*.png")), target="Pneumonia")


def test_cli_writes_overlays_scores_and_summary(tmp_path: Path, images: Path) -> None:
    b = _bundle(tmp_path, "binary", ["normal", "tumour"], 1)
    masks = tmp_path / "masks"
    masks.mkdir()
    m = np.zeros((40, 48), np.uint8)
    m[5:20, 5:30] = 255
    Image.fromarray(m).save(masks / "case0_mask.png")
    out = tmp_path / "out"
    code = main(["explain", str(b), str(images), "--target", "tumour", "--masks", str(masks), "--out", str(out)])
    assert code == 0
    assert (out / "case0__tumour__gradcam.png").is_file() and (out / "case1__tumour__gradcam.png").is_file()
    assert (out / "gallery_tumour.png").is_file() and (out / "explain_report.html").is_file()
    df = pd.read_csv(out / "scores.csv")
    assert list(df["source"]) == ["case0", "case1"]
    assert df.loc[0, "ground_truth"] == "case0_mask.png" and 0 <= df.loc[0, "energy_in_mask"] <= 1
    assert np.isnan(df.loc[1, "pointing_game"])  # no mask for case1
    import json

    summary = json.loads((out / "summary.json").read_text())
    assert summary["maps"] == 2 and summary["scored_maps"] == 1 and summary["layer"] == "stages.3"


@pytest.mark.parametrize(("args", "needle"), [
    (["--method", "magic"], "valid: gradcam"),
    (["--layer", "nope"], "unknown layer 'nope'"),
    (["--target", "5"], "out of range"),
])
def test_cli_bad_options_are_one_line_errors(tmp_path: Path, images: Path, capsys: pytest.CaptureFixture[str],
                                             args: list[str], needle: str) -> None:
    b = _bundle(tmp_path, "binary", ["normal", "tumour"], 1)
    code = main(["explain", str(b), str(images), "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and len(err.splitlines()) == 1


def test_cli_unreadable_image_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    b = _bundle(tmp_path, "binary", ["normal", "tumour"], 1)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image at all")
    code = main(["explain", str(b), str(bad), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "broken.png" in err and len(err.splitlines()) == 1
