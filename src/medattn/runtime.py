"""Process-level tuning that makes CPU training and inference markedly faster.

glibc serves every allocation above its mmap threshold (a few MiB at most) with a fresh
``mmap`` and gives it back with ``munmap`` on free. Activation tensors of a CNN are that large,
so each training step page-faults and zero-fills all of them again: on the 2-core reference
machine a SynthPCam step spent as much time in the kernel as in PyTorch. Raising the threshold
(and the trim threshold) keeps those buffers in the heap for reuse; measured here: 46 → 99
images/s for ``patch_cnn_attention`` (width 0.5, batch 64, 96 px). Memory already used stays
reserved by the process instead of going back to the OS.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["cpu_has_native_bf16", "tune_allocator"]

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_done = False


def tune_allocator(mmap_threshold: int = 1 << 30, trim_threshold: int = (1 << 31) - 1,
                   top_pad: int = 64 << 20) -> bool:
    """Raise glibc's mmap/trim thresholds once per process (Linux only).

    Set ``MEDATTN_NO_MALLOPT=1`` to leave the allocator alone. Returns whether it was applied.
    """
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("MEDATTN_NO_MALLOPT"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = all(mallopt(k, v) == 1 for k, v in (
        (_M_MMAP_THRESHOLD, mmap_threshold), (_M_TRIM_THRESHOLD, trim_threshold), (_M_TOP_PAD, top_pad)))
    _done = ok
    return ok


def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX-BF16; read from
    ``/proc/cpuinfo``, so False off Linux). There, oneDNN runs bf16 convolutions about twice as fast
    as fp32 (docs/benchmarks.md, train_step_speed.py); elsewhere bf16 is emulated and slower."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False
