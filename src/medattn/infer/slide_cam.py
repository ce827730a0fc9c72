"""``medattn slide --cam``: Grad-CAM of the positive tiles stitched into a slide-level map.

Each tile over the threshold gets a Grad-CAM of its positive class (computed by
``SlideOptions.cam_maps``, :func:`medattn.explain.cam.tile_cams` from the CLI: explanations sit
above inference), pooled to ``cells × cells`` and written into a memory-mapped ``cam.npy`` of
``rows·cells × cols·cells`` (NaN where no CAM was computed), so memory stays bounded and a resumed
run keeps the maps already made. ``cam.png`` shows it over the thumbnail.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["CamStitcher"]


class CamStitcher:
    """Slide-level CAM map filled tile by tile.

    Args:
        out: slide output folder (``cam.npy`` lives there).
        rows, cols: the tile grid.
        cells: CAM pixels per tile edge.
        resume: keep an existing ``cam.npy`` of the same shape.
    """

    def __init__(self, out: Path, rows: int, cols: int, cells: int = 8, resume: bool = False) -> None:
        from numpy.lib.format import open_memmap

        self.path, self.cells = Path(out) / "cam.npy", cells
        shape = (rows * cells, cols * cells)
        if resume and self.path.is_file():
            self.map = open_memmap(self.path, mode="r+")
            if self.map.shape != shape:
                raise ValueError(f"{self.path} has shape {self.map.shape}, expected {shape}")
        else:
            self.map = open_memmap(self.path, mode="w+", dtype=np.float16, shape=shape)
            self.map[:] = np.nan

    def add(self, cams: np.ndarray, rows: list[int], cols: list[int]) -> None:
        """CAMs of tiles (``B×h×w`` in [0, 1]) into cells ``(row, col)``."""
        if not len(cams):
            return
        c = self.cells
        pooled = torch.nn.functional.adaptive_avg_pool2d(torch.as_tensor(cams)[:, None].float(), c)[:, 0].numpy()
        for r, k, m in zip(rows, cols, pooled, strict=True):
            self.map[r * c:(r + 1) * c, k * c:(k + 1) * c] = m
        self.map.flush()

    def write_png(self, thumb: np.ndarray, extent: tuple[float, float, float, float], title: str) -> Path:
        """``cam.png`` next to ``cam.npy``: the CAM over the thumbnail."""
        from medattn.infer.overlays import write_overlay

        png = self.path.with_suffix(".png")
        write_overlay(png, thumb, np.asarray(self.map, dtype=np.float32), extent, threshold=0.5, title=title)
        return png
