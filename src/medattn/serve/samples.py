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


def _training_items(meta: dict[str, Any], n: int) -> list[tuple[str, np.ndarray]]:
    """Up to ``n`` items of the (synthetic) data the bundle was trained on, one class after another
    (its test split first), when that folder is still there; else none."""
    td = meta.get("training_data") or {}
    if not td.get("path") or not Path(td["path"]).exists():
        return []
    from medattn.data.formats.registry import read_item, scan
    from medattn.errors import MedattnError

    try:
        table = scan(td["path"], td.get("format"))
        if "split" in table.columns and (table["split"] == "test").any():
            table = table[table["split"] == "test"]
        if "label" in table.columns:  # the k-th item of every class before the (k+1)-th of any
            table = table.assign(_k=table.groupby(table["label"].astype(str)).cumcount()).sort_values("_k", kind="stable")
        classes = list(meta.get("class_names") or [])
        names = (table["class_name"] if "class_name" in table.columns else
                 [classes[int(v)] if str(v).isdigit() and int(v) < len(classes) else "item"
                  for v in table.get("label", table["file"])])
        names = list(names)
        return [(f"{name}_{i}", np.asarray(read_item(td["path"], str(f))))
                for i, (f, name) in enumerate(zip(list(table["file"])[:n], names[:n], strict=True))]
    except (MedattnError, OSError, ValueError, KeyError):
        return []


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


_SHOWN = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif")  # formats a browser shows


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _SHOWN)


def sample_images(meta: dict[str, Any], bundle_path: str | Path | None = None, n: int = 6,
                  folder: str | Path | None = None) -> list[Path]:
    """Sample inputs of the dashboard, from the bundle's own domain or none, first found of:

    1. ``folder`` (``medattn serve --samples DIR``): its images (PNG, JPEG, BMP, WebP, GIF);
    2. the bundle's own ``samples/`` folder;
    3. a bundle trained on synthetic data (``synthetic_data``): items of its own training data when that
       folder is still there, else synthetic images of its channels;
    4. none: a model trained on real data gets no synthetic patches of another domain.

    Raises:
        ConfigError: ``folder`` is not a folder or holds no such image.
    """
    if folder is not None:
        from medattn.errors import ConfigError

        f = Path(folder)
        own = _images_in(f) if f.is_dir() else []
        if not own:
            raise ConfigError(f"--samples {f}: " + ("no PNG, JPEG, BMP, WebP or GIF image in that folder; put sample "
                                                   "images there" if f.is_dir() else "not a folder; pass a folder of "
                                                   "sample images"))
        return own[:n]
    if bundle_path is not None and (Path(bundle_path) / "samples").is_dir():
        own = _images_in(Path(bundle_path) / "samples")
        if own:
            return own[:n]
    if not meta.get("synthetic_data"):
        return []
    out = Path(tempfile.mkdtemp(prefix="medattn_samples_"))
    made = _training_items(meta, n) or _synthetic(meta, n)
    return [atomic_write_bytes(out / f"{name}.png", png_bytes(img)) for name, img in made]
