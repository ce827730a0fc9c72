"""Built-in sample images for the dashboard, and malformed uploads for tests and load benchmarks."""

from __future__ import annotations

import io
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from medattn.io import atomic_write_bytes

__all__ = ["sample_images", "png_bytes", "png_bomb", "malformed_uploads"]


def png_bytes(arr: np.ndarray) -> bytes:
    """Encode a uint8 ``H×W`` or ``H×W×3`` array as PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int = 30000, height: int = 30000, *, full: bool = False) -> bytes:
    """A valid 1-bit grayscale PNG header declaring ``width × height`` pixels.

    With ``full`` the zero-filled image data really follows (a few hundred KB that would inflate to
    ``width × height`` pixels); otherwise only the first rows do, which is all a header check needs.
    """
    row = b"\x00" * (1 + (width + 7) // 8)
    comp = zlib.compressobj(9)
    parts = [comp.compress(row) for _ in range(height if full else min(height, 64))]
    idat = b"".join(parts) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def malformed_uploads(valid_png: bytes, max_upload_bytes: int, seed: int = 0) -> dict[str, tuple[str, bytes]]:
    """Bad uploads by kind → ``(file name, content)``: every one must be answered 4xx.

    Kinds: random bytes, truncated PNG, PNG bomb (30000×30000), text file named ``.png``,
    empty file, and an upload one byte over ``max_upload_bytes``.
    """
    rng = np.random.default_rng(seed)
    return {
        "random_bytes": ("noise.png", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()),
        "truncated_png": ("cut.png", valid_png[: max(60, len(valid_png) // 2)]),
        "png_bomb": ("bomb.png", png_bomb(30000, 30000)),
        "text_file": ("notes.png", b"patient notes: this is not an image\n" * 20),
        "empty_file": ("empty.jpg", b""),
        "oversized": ("huge.png", valid_png + b"\x00" * (max_upload_bytes + 1 - len(valid_png))),
    }


def _synthetic(meta: dict[str, Any], n: int) -> list[tuple[str, np.ndarray]]:
    size = meta.get("input_size", 96)
    side = int(size if isinstance(size, (int, float)) else size[0])
    rng = np.random.default_rng(7)
    if int(meta.get("in_chans", 3)) == 3:
        from medattn.data.synthetic import make_pcam_patch

        out = []
        for i in range(n):
            img, _, label = make_pcam_patch(rng, positive=i % 2 == 0)
            out.append((f"synthetic_{'tumour' if label else 'normal'}_{i}", img))
        return out
    yy, xx = np.mgrid[0:side, 0:side] / max(side - 1, 1)
    out = []
    for i in range(n):
        lungs = np.exp(-(((xx - 0.3) / 0.15) ** 2 + ((yy - 0.5) / 0.3) ** 2))
        lungs += np.exp(-(((xx - 0.7) / 0.15) ** 2 + ((yy - 0.5) / 0.3) ** 2))
        img = 0.8 - 0.5 * lungs + 0.05 * rng.standard_normal((side, side)) + 0.1 * i
        out.append((f"synthetic_xray_{i}", (np.clip(img, 0, 1) * 255).astype(np.uint8)))
    return out


def sample_images(meta: dict[str, Any], bundle_path: str | Path | None = None, n: int = 4) -> list[Path]:
    """PNG paths of sample inputs: the bundle's ``samples/`` folder when it has one, else
    synthetic images that match the bundle's channels (written to a temporary folder)."""
    if bundle_path is not None and Path(bundle_path).is_dir():
        own = sorted(p for p in (Path(bundle_path) / "samples").glob("*")
                     if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"))
        if own:
            return own[:n]
    folder = Path(tempfile.mkdtemp(prefix="medattn_samples_"))
    return [atomic_write_bytes(folder / f"{name}.png", png_bytes(img)) for name, img in _synthetic(meta, n)]
