from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
from medattn.runtime import tune_allocator  # noqa: E402

tune_allocator()
# Intra-op threads of the test process: 2 on the 2-core CI machine; set MEDATTN_TEST_THREADS=1 on
# a shared, oversubscribed machine, where 2 OpenMP threads make small convolutions far slower.
torch.set_num_threads(int(os.environ.get("MEDATTN_TEST_THREADS", max(1, min(2, os.cpu_count() or 1)))))

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SHARED_REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


def shared_data(name: str) -> Path:
    """Folder of ../shared/data/<name>, or skip the test when it is absent."""
    p = SHARED_DATA / name
    if not p.is_dir():
        pytest.skip(f"real data folder {p} is absent")
    return p


@pytest.fixture(scope="session")
def synth_pcam(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small SynthPCam folder shared by the session's tests."""
    from medattn.data.synthetic import write_pcam

    root = tmp_path_factory.mktemp("synth_pcam")
    return write_pcam(root, {"train": 96, "valid": 32, "test": 32}, seed=3)
