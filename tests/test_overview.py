"""Dataset overview renders for every supported format (PNG montage + tables) and in reports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import shared_data
from medattn.data.formats import FORMATS


@pytest.fixture(scope="module")
def smoke_roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from medattn.engine.smoke import write_smoke_data

    base = tmp_path_factory.mktemp("overview")
    return {fmt: write_smoke_data(fmt, base / fmt, n=18, task="multilabel" if fmt == "cxr14" else "binary")
            for fmt in FORMATS}


@pytest.mark.parametrize("fmt", FORMATS)
def test_overview_renders_for_every_format(smoke_roots: dict[str, Path], fmt: str, tmp_path: Path) -> None:
    from medattn.overview import dataset_overview, write_overview

    ov = dataset_overview(smoke_roots[fmt], fmt, per_class=2, max_stats=20)
    out = write_overview(ov, tmp_path)
    montage = np.asarray(Image.open(out / "montage.png"))
    assert montage.ndim == 3 and montage.shape[0] >= 72 and montage.std() > 0
    html = (out / "overview.html").read_text()
    assert "<table>" in html and "data:image/png;base64," in html and "Patients per split" in html
    assert ov.counts.loc["all items", "total"] == ov.n_items
    assert ov.groups.loc["all", "items"] == ov.n_items
    assert ov.sizes.loc["width", "min"] > 0 and 0 <= ov.intensity.loc["all sampled", "mean R"] <= 255
    if fmt == "cxr14":
        co = ov.cooccurrence.to_numpy()
        assert np.array_equal(co, co.T)
        assert co.diagonal().tolist() == ov.counts.loc[ov.class_names, "total"].tolist()
    if fmt in ("seg_pairs", "monuseg"):
        assert ov.segmentation and ov.segmentation["foreground share mean"] > 0


def test_overview_cli_and_split_file(smoke_roots: dict[str, Path], tmp_path: Path) -> None:
    from medattn.cli import main
    from medattn.data.formats import scan
    from medattn.data.splits import make_split, write_split_csv

    root = smoke_roots["idc"]
    st = make_split(scan(root, "idc"), seed=1)
    write_split_csv(st.iloc[:-2], tmp_path / "split.csv")  # the run used all but two items
    assert main(["overview", str(root), "--format", "idc", "--split-csv", str(tmp_path / "split.csv"),
                 "--out", str(tmp_path / "ov")]) == 0
    import json

    doc = json.loads((tmp_path / "ov" / "overview.json").read_text())
    assert doc["n_items"] == len(st) - 2 and "left out" in doc["split_source"]
    # patients: IDC groups are patient ids, never split across sides
    assert doc["groups"]["all"]["patients"] < doc["n_items"]
    assert main(["overview", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2


def test_overview_section_never_breaks_a_report(tmp_path: Path) -> None:
    from medattn.overview import overview_section

    sid, heading, body = overview_section(tmp_path)  # no run.json here
    assert sid == "overview" and "unavailable" in body


def test_overview_of_real_herlev() -> None:
    from medattn.overview import dataset_overview

    root = shared_data("herlev_dev") / "images"
    ov = dataset_overview(root, "folders", per_class=2, max_stats=28)
    assert len(ov.class_names) == 7 and ov.n_items > 400
    assert ov.sizes.loc["width", "max"] > ov.sizes.loc["width", "min"]  # Herlev cells vary in size
