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
