"""Up-front file check: every bad image or mask of a table is found; error names it, skip drops it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medattn.data.images import write_image
from medattn.data.validate import apply_bad_file_policy, describe_problem, find_bad_files
from medattn.errors import ConfigError, DataError


@pytest.fixture()
def table(tmp_path: Path) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    for name in ("ok.png", "ok2.png"):
        write_image(tmp_path / name, rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
    write_image(tmp_path / "m_ok.png", np.zeros((16, 16), np.uint8))
    (tmp_path / "zero.png").write_bytes(b"")
    raw = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all")
    (tmp_path / "m_zero.png").write_bytes(b"")
    return pd.DataFrame({
        "file": ["ok.png", "zero.png", "trunc.png", "junk.jpg", "gone.png", "ok2.png"],
        "mask": ["m_ok.png", "m_ok.png", "m_ok.png", "m_ok.png", "m_ok.png", "m_zero.png"],
        "split": ["train"] * 6,
    })


def test_find_bad_files_reports_each_problem(tmp_path: Path, table: pd.DataFrame) -> None:
    bad = find_bad_files(tmp_path, table)
    got = {(b["file"], b["path"]): b["problem"] for b in bad}
    assert got == {("zero.png", "zero.png"): "zero-byte", ("trunc.png", "trunc.png"): "truncated",
                   ("junk.jpg", "junk.jpg"): "unreadable", ("gone.png", "gone.png"): "missing",
                   ("ok2.png", "m_zero.png"): "zero-byte"}
    assert describe_problem("zero-byte") == "empty (0 bytes)"


def test_error_policy_names_the_first_file(tmp_path: Path, table: pd.DataFrame) -> None:
    with pytest.raises(DataError) as exc:
        apply_bad_file_policy(tmp_path, table, "error")
    msg = str(exc.value)
    assert "\n" not in msg and "zero.png" in msg and "empty (0 bytes)" in msg
    assert "4 more bad file(s)" in msg and "on_bad_file: skip" in msg


def test_skip_policy_drops_items_and_records_them(tmp_path: Path, table: pd.DataFrame) -> None:
    table.attrs["classes"] = ["a"]
    kept, policy = apply_bad_file_policy(tmp_path, table, "skip")
    assert kept["file"].tolist() == ["ok.png"]
    assert kept.attrs == {"classes": ["a"]}
    assert set(policy.bad) == {"zero.png", "trunc.png", "junk.jpg", "gone.png", "ok2.png"}
    lines = policy.write(tmp_path / "bad_files.txt").read_text().splitlines()
    assert lines[0] == "file,reason" and len(lines) == 6


def test_clean_table_and_h5_items_pass(tmp_path: Path, table: pd.DataFrame) -> None:
    clean = pd.DataFrame({"file": ["ok.png", "x.h5#3"]})
    out, policy = apply_bad_file_policy(tmp_path, clean, "error")
    assert out is clean and not policy.bad
    with pytest.raises(ConfigError):
        apply_bad_file_policy(tmp_path, clean, "ignore")
