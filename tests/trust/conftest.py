from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def smoke_pcam_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A smoke ``pcam-attention`` run (96 px synthetic patches, model input 48 px): ``<run>/bundle``."""
    from medattn.engine.runner import train_run

    out = tmp_path_factory.mktemp("trust") / "run"
    train_run("pcam-attention", out=out, smoke=True)
    return out


@pytest.fixture(scope="session")
def tissue_1000(smoke_pcam_run: Path) -> np.ndarray:
    """A 1000×1000 image of the run's own tissue patches tiled (in range, except for its size)."""
    import json

    from medattn.data.formats.registry import read_item

    info = json.loads((smoke_pcam_run / "run.json").read_text())
    import pandas as pd

    files = pd.read_csv(smoke_pcam_run / "split.csv")
    tiles = [read_item(info["data"], f) for f in files[files["split"] == "train"]["file"][:4]]
    row = np.concatenate(tiles[:2] * 6, 1)
    return np.ascontiguousarray(np.concatenate([row, np.concatenate(tiles[2:4] * 6, 1)] * 6, 0)[:1000, :1000])
