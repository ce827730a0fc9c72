"""One ``nn.Module`` for segment → emphasise → classify, so a chained pair serves like one model.

Input: ``B×3×S×S`` images in [0, 1] at the pipeline's working size ``S``. Each sub-model gets its
own resize, channel count and normalisation (from its bundle), exactly as its
:class:`~medattn.bundle.Predictor` would prepare the image. ``forward`` returns the classifier's
logits (gradients flow through the classifier and the emphasised image, never through the
mask), so CAM code and the REST server treat the chain like any classifier: the classifier runs
last, so the CAM target layer found by probing the chain is the classifier's own (and a classifier
that declares ``cam_target_layer`` keeps it, as ``classifier.<layer>``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from medattn.models.emphasis import emphasise, region_boxes, region_mask, resize
from medattn.models.outputs import main_logits, seg_target_of

__all__ = ["ChainedModel", "ChainOutput", "working_size", "MAX_WORK_SIZE"]

MAX_WORK_SIZE = 512


@dataclass
class ChainOutput:
    """Everything one chained forward pass computed (batch-first tensors)."""

    mask: torch.Tensor
    """Boolean region masks at the working size, ``B×S×S``."""
    boxes: torch.Tensor
    """``crop`` mode: region boxes ``(x0, y0, x1, y1)`` at the working size; else the whole image."""
    emphasised: torch.Tensor
    """The classifier's input in [0, 1] (before normalisation), ``B×C×h×w``."""
    seg_logits: torch.Tensor
    logits: torch.Tensor


def working_size(seg_meta: dict[str, Any], cls_meta: dict[str, Any], mode: str) -> int:
    """Side of the square working image: max of both input sizes (×2 for ``crop``, ≤ 512)."""
    def side(m: dict[str, Any]) -> int:
        s = m["input_size"]
        return int(s) if isinstance(s, (int, float)) else int(max(s))

    base = max(side(seg_meta), side(cls_meta))
    return int(min(MAX_WORK_SIZE, max(base, 2 * side(cls_meta) if mode == "crop" else base)))


def _hw(size: Any) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[1]))


def _chans(x: torch.Tensor, c: int) -> torch.Tensor:
    if c == x.shape[1]:
        return x
    if c == 1:  # ITU-R 601 luma, as PIL's convert("L")
        w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * w).sum(1, keepdim=True)
    return x.expand(-1, c, -1, -1)


class ChainedModel(nn.Module):
    """Segmenter + emphasis + classifier.

    Args:
        segmenter: a segmentation model (``B×K×h×w`` logits).
        classifier: a classification model.
        seg_meta: the segmenter's bundle metadata (``input_size``, ``in_chans``, ``mean``, ``std``,
            optional ``threshold``).
        cls_meta: the classifier's bundle metadata.
        mode: ``mask``, ``dim`` or ``crop``.
        dim: ``dim`` mode: share of background contrast kept.
        fill: background value of ``mask``/``dim`` in [0, 1].
        margin: ``crop`` mode: margin added around the region's box.
    """

    def __init__(self, segmenter: nn.Module, classifier: nn.Module, seg_meta: dict[str, Any],
                 cls_meta: dict[str, Any], *, mode: str = "mask", dim: float = 0.3, fill: float = 0.0,
                 margin: float = 0.05) -> None:
        super().__init__()
        self.segmenter, self.classifier = segmenter.eval(), classifier.eval()
        self.mode, self.dim, self.fill, self.margin = mode, float(dim), float(fill), float(margin)
        self.seg_hw, self.cls_hw = _hw(seg_meta["input_size"]), _hw(cls_meta["input_size"])
        self.seg_chans, self.cls_chans = int(seg_meta.get("in_chans", 3)), int(cls_meta.get("in_chans", 3))
        self.seg_threshold = float(seg_meta.get("threshold", 0.5))
        self.seg_target = seg_target_of(seg_meta)
        for name, meta, c in (("seg", seg_meta, self.seg_chans), ("cls", cls_meta, self.cls_chans)):
            self.register_buffer(f"{name}_mean", torch.tensor(list(meta["mean"])[:c]).view(1, c, 1, 1), persistent=False)
            self.register_buffer(f"{name}_std", torch.tensor(list(meta["std"])[:c]).view(1, c, 1, 1), persistent=False)
        inner = getattr(classifier, "cam_target_layer", None)
        if inner:
            self.cam_target_layer = f"classifier.{inner}"

    @torch.no_grad()
    def segment(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(segmentation logits, boolean region mask at x's size)`` of ``[0, 1]`` images."""
        s = (_chans(resize(x, self.seg_hw), self.seg_chans) - self.seg_mean) / self.seg_std
        logits = main_logits(self.segmenter(s)).float()
        return logits, region_mask(logits, tuple(x.shape[-2:]), self.seg_threshold, self.seg_target)

    def emphasise(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(classifier input in [0, 1], boxes)`` for images ``x`` and their region masks."""
        h, w = x.shape[-2:]
        if self.mode == "crop":
            boxes = region_boxes(mask, self.margin)
        else:
            boxes = torch.tensor([[0, 0, w, h]] * len(x), dtype=torch.long)
        e = emphasise(x, mask, self.mode, self.cls_hw, dim=self.dim, fill=self.fill, boxes=boxes)
        return _chans(e, self.cls_chans), boxes

    def classify(self, e: torch.Tensor) -> torch.Tensor:
        """Classifier logits of emphasised ``[0, 1]`` images."""
        return main_logits(self.classifier((e - self.cls_mean) / self.cls_std))

    def run_chain(self, x: torch.Tensor) -> ChainOutput:
        """The whole chain, keeping masks, boxes and the emphasised images."""
        seg_logits, mask = self.segment(x)
        e, boxes = self.emphasise(x, mask)
        return ChainOutput(mask=mask, boxes=boxes, emphasised=e, seg_logits=seg_logits, logits=self.classify(e))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classifier logits of the emphasised images."""
        _, mask = self.segment(x)
        e, _ = self.emphasise(x, mask)
        return self.classify(e)
