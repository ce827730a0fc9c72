"""``trainer.precision: fast`` picks bf16 only where the CPU computes it in hardware."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medattn import runtime
from medattn.engine import fit


def test_native_bf16_read_from_cpu_flags(tmp_path: Path) -> None:
    yes = tmp_path / "yes"
    yes.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n")
    amx = tmp_path / "amx"
    amx.write_text("flags\t\t: avx2 amx_tile amx_bf16\n")
    no = tmp_path / "no"
    no.write_text("flags\t\t: fpu sse2 avx2 avx512f\n")
    assert runtime.cpu_has_native_bf16(str(yes)) and runtime.cpu_has_native_bf16(str(amx))
    assert not runtime.cpu_has_native_bf16(str(no))
    assert not runtime.cpu_has_native_bf16(str(tmp_path / "missing"))  # not Linux: no bf16 guess


@pytest.mark.parametrize(("native", "cuda", "setting", "expected"), [
    (True, False, "fast", "bf16-mixed"),
    (False, False, "fast", "32-true"),
    (True, True, "fast", "16-mixed"),
    (True, False, "auto", "32-true"),
    (False, True, "auto", "16-mixed"),
    (True, False, "32", "32-true"),
    (False, False, "bf16-mixed", "bf16-mixed"),
])
def test_resolve_precision(monkeypatch: pytest.MonkeyPatch, native: bool, cuda: bool, setting: str,
                           expected: str) -> None:
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda *a: native)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert fit.resolve_precision(setting) == expected


def test_fast_on_cpu_accelerator_ignores_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda *a: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert fit.resolve_precision("fast", "cpu") == "32-true"


def test_channels_last_trains_the_same_network_and_writes_standard_layout(tmp_path: Path) -> None:
    """``trainer.channels_last``: same test predictions as the standard layout (to float noise), a
    bundle whose tensors are contiguous, and the precision used in run.json."""
    import csv

    from safetensors.torch import load_file

    from medattn.engine.runner import train_run

    preds = {}
    for cl in (False, True):
        out = tmp_path / f"cl{int(cl)}"
        train_run("nuclei-cpu", out=out, smoke=True,
                  overrides=[f"trainer.channels_last={str(cl).lower()}", "evaluation.tta=false"])
        with (out / "test_predictions.csv").open() as f:
            preds[cl] = list(csv.DictReader(f))
        ckpt = torch.load(str(out / "checkpoints" / "last.ckpt"), map_location="cpu", weights_only=True)
        convs = [t for t in ckpt["state_dict"].values() if t.ndim == 4 and t.shape[1] > 1 and t.shape[-1] > 1]
        nhwc = [t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous() for t in convs]
        assert convs and all(nhwc) == cl and any(nhwc) == cl  # trained in NHWC only when asked
        weights = next((out / "bundle").glob("*.safetensors"))
        assert all(t.is_contiguous() for t in load_file(str(weights)).values())
    import json

    assert json.loads((tmp_path / "cl1" / "run.json").read_text())["precision"] == "32-true"  # smoke: fp32
    assert len(preds[True]) == len(preds[False]) > 0
    numeric = 0
    for a, b in zip(preds[False], preds[True], strict=True):  # same arithmetic, other layout
        for k, v in a.items():
            try:
                x, y = float(v), float(b[k])
            except ValueError:
                assert v == b[k]
                continue
            numeric += 1
            assert abs(x - y) <= 1e-3 * max(1.0, abs(x)), (k, v, b[k])
    assert numeric > 0
