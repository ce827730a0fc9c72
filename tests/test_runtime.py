from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import resource, torch
from medattn.runtime import tune_allocator
print(tune_allocator())
torch.set_num_threads(1)
m = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(32, 1, 3, padding=1))
x = torch.randn(32, 3, 96, 96)
def step():
    m(x).sum().backward()
for _ in range(2):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(env_extra: dict[str, str]) -> tuple[str, int]:
    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, check=True)
    applied, faults = out.stdout.split()
    return applied, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_tuned_allocator_stops_page_faulting_activations():
    applied, tuned = _faults({})
    skipped, untuned = _faults({"MEDATTN_NO_MALLOPT": "1"})
    assert applied == "True" and skipped == "False"
    # untuned, every large activation buffer is a fresh mmap whose pages fault in again each step
    assert untuned > 5_000, untuned
    assert tuned < untuned / 5, (tuned, untuned)
