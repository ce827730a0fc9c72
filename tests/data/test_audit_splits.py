"""Splits and the leakage audit: copies across splits are flagged file by file; clean splits pass."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medattn.cli import main
from medattn.data.audit import audit
from medattn.data.formats import scan
from medattn.data.splits import fold_view, make_split, read_split_csv, write_split_csv
from medattn.data.synthetic import write_cell_folders
from medattn.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cell_folders(tmp_path_factory.mktemp("cells") / "cells", n_per_class=8, size=64, seed=5)


def _leaky(cells: Path, tmp: Path) -> tuple[Path, Path, list[str]]:
    root = tmp / "leaky"
    shutil.copytree(cells, root)
    clean = make_split(scan(root), seed=0)
    train = clean[clean["split"] == "train"]["file"].tolist()[:3]
    copies = []
    for kind, src in zip(("copy", "jpeg", "resized"), train, strict=True):
        p = root / src
        dst = p.with_name(f"{kind}_{p.stem}" + (".jpg" if kind == "jpeg" else p.suffix))
        if kind == "copy":
            shutil.copyfile(p, dst)
        elif kind == "jpeg":
            Image.open(p).convert("RGB").save(dst, quality=75)
        else:
            im = Image.open(p).convert("RGB")
            im.resize((52, 52), Image.BICUBIC).save(dst)
        copies.append(dst.relative_to(root).as_posix())
    extra = pd.DataFrame({"file": copies, "split": "test", "group": copies, "label": 0})
    leaky = pd.concat([clean, extra], ignore_index=True)
    write_split_csv(leaky, tmp / "leaky_split.csv")
    return root, tmp / "leaky_split.csv", copies


def test_clean_group_split_passes_strict(cells: Path, tmp_path: Path) -> None:
    split = make_split(scan(cells), seed=1)
    write_split_csv(split, tmp_path / "split.csv")
    out = tmp_path / "audit.json"
    assert main(["audit", str(cells), "--split-csv", str(tmp_path / "split.csv"), "--strict", "--out", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["passed"] and rep["leaking_files"] == [] and set(rep["splits"]) == {"train", "valid", "test"}


def test_copies_across_splits_flagged_file_by_file(cells: Path, tmp_path: Path, capsys) -> None:
    root, split_csv, copies = _leaky(cells, tmp_path)
    out = tmp_path / "audit.json"
    assert main(["audit", str(root), "--split-csv", str(split_csv), "--strict", "--out", str(out)]) == 1
    rep = json.loads(out.read_text())
    assert not rep["passed"]
    assert rep["leakage"]["exact_cross_split"] == 1
    assert rep["leakage"]["near_cross_split"] >= 2
    for c in copies:  # byte-identical, JPEG re-encoded and resized copies are each named
        assert c in rep["leaking_files"], c
    printed = capsys.readouterr().out
    assert "LEAK identical" in printed and "LEAK near-identical" in printed
    assert main(["audit", str(root), "--split-csv", str(split_csv), "--out", str(out)]) == 0  # not strict


def test_group_overlap_and_bad_files(cells: Path, tmp_path: Path) -> None:
    root = tmp_path / "bad"
    shutil.copytree(cells, root)
    first = sorted((root / "im_Parabasal").glob("*.png"))[0]
    data = first.read_bytes()
    first.write_bytes(data[: len(data) // 2])  # truncated
    (root / "im_Parabasal" / "empty.png").write_bytes(b"")
    table = scan(root)
    split = make_split(table, seed=0)
    split.loc[split.index[:2], "group"] = "P1"
    split.loc[split.index[0], "split"], split.loc[split.index[1], "split"] = "train", "test"
    rep = audit(root, split)
    assert rep["leakage"]["group_overlap"] == 1 and not rep["passed"]
    problems = {b["file"].split("/")[-1]: b["problem"] for b in rep["bad_files"]}
    assert problems["empty.png"] == "zero-byte"
    assert problems[first.name] in ("truncated", "unreadable")


def test_split_ratios_groups_determinism() -> None:
    rng = np.random.default_rng(0)
    n = 600
    table = pd.DataFrame({"file": [f"f{i}.png" for i in range(n)], "group": rng.integers(0, 100, n).astype(str),
                          "label": rng.integers(0, 2, n)})
    a = make_split(table, ratios=(0.7, 0.15, 0.15), seed=3)
    b = make_split(table, ratios=(0.7, 0.15, 0.15), seed=3)
    assert a.equals(b)
    assert (a.groupby("group")["split"].nunique() == 1).all()
    frac = a.groupby("split")["group"].nunique() / 100
    assert abs(frac["test"] - 0.15) <= 0.06 and abs(frac["train"] - 0.7) <= 0.08
    c = make_split(table, seed=4)
    assert not a["split"].equals(c["split"])


def test_official_split_respected_and_valid_carved() -> None:
    table = pd.DataFrame({"file": [f"f{i}" for i in range(200)], "group": [str(i // 4) for i in range(200)],
                          "label": [i % 2 for i in range(200)],
                          "split": ["test" if i >= 160 else "train" for i in range(200)]})
    s = make_split(table, seed=0)
    assert (s["split"].iloc[160:] == "test").all()
    assert set(s["split"].iloc[:160]) == {"train", "valid"}
    assert (s.groupby("group")["split"].nunique() == 1).all()


def test_kfold_and_fold_view(tmp_path: Path) -> None:
    table = pd.DataFrame({"file": [f"f{i}" for i in range(300)], "group": [str(i // 3) for i in range(300)],
                          "label": [i % 3 for i in range(300)]})
    s = make_split(table, folds=5, seed=0)
    assert set(s.loc[s["split"] == "train", "fold"]) == set(range(5))
    assert (s.loc[s["split"] == "test", "fold"] == -1).all()
    v = fold_view(s, 2)
    assert set(v["split"]) == {"train", "valid", "test"}
    assert (v.groupby("group")["split"].nunique() == 1).all()
    write_split_csv(s, tmp_path / "s.csv")
    back = read_split_csv(tmp_path / "s.csv")
    assert list(back.columns) == ["file", "split", "group", "label", "fold"]
    with pytest.raises(ConfigError):
        fold_view(s, 9)


def test_split_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("file,split,group,label\na.png,training,g,0\n")
    with pytest.raises(DataError, match="unknown split"):
        read_split_csv(tmp_path / "bad.csv")
    with pytest.raises(DataError, match="not found"):
        read_split_csv(tmp_path / "nope.csv")
    with pytest.raises(ConfigError):
        make_split(pd.DataFrame({"file": ["a"], "label": [0]}), ratios=(0.5, 0.5))
    assert main(["split", str(tmp_path / "missing")]) == 2


def test_cli_split_writes_contract(cells: Path, tmp_path: Path) -> None:
    out = tmp_path / "split.csv"
    assert main(["split", str(cells), "--out", str(out), "--ratios", "0.6,0.2,0.2", "--seed", "2"]) == 0
    df = read_split_csv(out)
    assert list(df.columns) == ["file", "split", "group", "label"] and len(df) == 40
