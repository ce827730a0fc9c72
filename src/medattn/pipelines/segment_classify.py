"""Segment-then-classify: run a U-Net bundle, emphasise its regions, classify with another bundle.

>>> pipe = SegmentClassifyPipeline("runs/seg/bundle", "runs/grade/bundle", mode="dim")
>>> res = pipe.run(["cell.png"])[0]
>>> res.classification["label"], res.region_fraction, res.cam.shape

Each image is resized once to the pipeline's working size (the larger of the two bundles' input
sizes, twice that for ``crop`` so a cut-out keeps detail); the segmenter and the classifier then
prepare it as their own bundles prescribe (see :class:`~medattn.models.chain.ChainedModel`).
The pipeline's predictor is the one a chained bundle loads as
(:func:`medattn.bundle.chained.chain_predictor`), so the figures of
:func:`~medattn.pipelines.chain_eval.evaluate_chain` are those of the served pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medattn.bundle.chained import chain_predictor, read_chained_bundle, settings_of
from medattn.bundle.predictor import Predictor
from medattn.decode import read_image

__all__ = ["SegmentClassifyPipeline", "ChainResult", "load_pipeline"]


@dataclass
class ChainResult:
    """One image through the chain (arrays at the image's original resolution unless noted)."""

    source: str
    mask: np.ndarray
    """Region mask (``uint8``, 1 = region) at the original resolution."""
    region_fraction: float
    box: tuple[int, int, int, int]
    """``(x0, y0, x1, y1)`` of the classified region at the original resolution (the whole image
    unless ``crop``)."""
    emphasised: np.ndarray
    """The image the classifier saw (``uint8``, classifier input size)."""
    classification: dict[str, Any]
    alone: dict[str, Any] | None = None
    """The classifier's result on the untouched image (``compare=True``)."""
    cam: np.ndarray | None = None
    """The classifier's CAM of the emphasised image mapped back onto the original (``[0, 1]``)."""
    cam_class: str | None = None
    image: np.ndarray | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The result without arrays (for ``results.json``)."""
        out = {"source": self.source, "region_fraction": self.region_fraction, "box": list(self.box),
               "classification": self.classification, "cam_class": self.cam_class}
        if self.alone is not None:
            out["classifier_alone"] = self.alone
        return out


class SegmentClassifyPipeline:
    """A segmenter bundle and a classifier bundle joined by an emphasis step.

    Args:
        segmenter: segmentation bundle (path or :class:`Predictor`).
        classifier: binary / multiclass / multilabel bundle (path or :class:`Predictor`).
        mode: ``mask`` (background → ``fill``), ``dim`` (background faded) or ``crop`` (box of the
            largest region).
        dim: ``dim`` mode: share of the background's contrast kept.
        fill: background value in [0, 1] for ``mask``/``dim``.
        margin: ``crop`` mode: fraction of the box added on every side.
        device: torch device (default: the classifier's).
    """

    def __init__(self, segmenter: Predictor | str | Path, classifier: Predictor | str | Path, *,
                 mode: str = "mask", dim: float = 0.3, fill: float = 0.0, margin: float = 0.05,
                 device: str | torch.device | None = None) -> None:
        self.predictor = chain_predictor(segmenter, classifier, mode=mode, dim=dim, fill=fill, margin=margin,
                                         device=device)
        """A :class:`~medattn.bundle.chained.ChainedPredictor` whose model is the whole chain (inputs in
        [0, 1] at the working size): what a saved chained bundle loads as."""
        self.segmenter, self.classifier = self.predictor.segmenter, self.predictor.classifier
        self.model, self.device = self.predictor.model, self.predictor.device
        self.mode, self.dim, self.fill, self.margin = mode, dim, fill, margin
        self.work_size = int(self.predictor.meta["pipeline"]["work_size"])

    def settings(self) -> dict[str, Any]:
        """The emphasis settings (what ``pipeline.json`` records)."""
        return dict(self.predictor.meta["pipeline"])

    @property
    def class_names(self) -> list[str]:
        return self.classifier.class_names

    def preprocess(self, images: Sequence[Any]) -> torch.Tensor:
        """Images (paths, PIL, arrays) → ``B×3×S×S`` floats in [0, 1] at the working size."""
        return self.predictor.preprocess(images)

    @torch.no_grad()
    def probabilities(self, images: Sequence[Any], batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """``(chained, classifier-alone)`` probabilities of the same images (rows in order)."""
        chained, alone = [], []
        for s in range(0, len(images), batch_size):
            part = list(images[s : s + batch_size])
            chained.append(self.predictor.predict_tensor(self.preprocess(part))[:, : self._n_out()])
            alone.append(self.classifier.predict_tensor(self.classifier.preprocess(part)))
        return np.concatenate(chained), np.concatenate(alone)

    def _n_out(self) -> int:
        return 1 if self.classifier.task == "binary" else len(self.class_names)

    def run(self, images: Sequence[Any] | Any, *, cam: str | None = "gradcam++", compare: bool = True,
            keep_images: bool = False) -> list[ChainResult]:
        """Segment, emphasise, classify and explain each image.

        Args:
            images: paths, PIL images or arrays.
            cam: CAM method for the classifier's map of the emphasised image (``None``: no map).
            compare: also classify the untouched image with the classifier alone.
            keep_images: keep the decoded originals in the results (for overlays).
        """
        from PIL import Image

        from medattn.explain.explain import source_name

        if not isinstance(images, (list, tuple)):
            images = [images]
        out = []
        for i, item in enumerate(images):
            img = read_image(item, "RGB", max_pixels=self.classifier.max_pixels)
            x = self.preprocess([img]).to(self.device)
            with torch.no_grad():
                res = self.model.run_chain(x)
            probs = self.predictor.postprocess_logits(res.logits)[0]
            h, w = img.shape[:2]
            s = self.work_size
            m = Image.fromarray(res.mask[0].cpu().numpy().astype(np.uint8)).resize((w, h), Image.NEAREST)
            x0, y0, x1, y1 = res.boxes[0].tolist()
            box = (round(x0 * w / s), round(y0 * h / s), max(round(x1 * w / s), 1), max(round(y1 * h / s), 1))
            e = res.emphasised[0].detach().cpu().clamp(0, 1)
            e_img = (e.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
            e_img = e_img[..., 0] if e_img.shape[2] == 1 else e_img
            r = ChainResult(source=source_name(item, i), mask=np.asarray(m), region_fraction=float(res.mask[0].float().mean()),
                            box=box, emphasised=e_img, classification=self.classifier.format_probs(probs),
                            image=img if keep_images else None)
            if compare:
                r.alone = self.classifier.infer([img])[0]
            if cam:
                r.cam, r.cam_class = self._cam(e_img, cam, (h, w), box)
            out.append(r)
        return out

    def _cam(self, e_img: np.ndarray, method: str, hw: tuple[int, int],
             box: tuple[int, int, int, int]) -> tuple[np.ndarray, str]:
        from medattn.explain import explain
        from medattn.explain.overlay import resize_map

        res = explain(self.classifier, [e_img], method=method, target="top", keep_images=False)
        if not res:  # multilabel with nothing above threshold: explain the likeliest finding
            p = np.asarray(self.classifier.predict_tensor(self.classifier.preprocess([e_img]))[0]).reshape(-1)
            res = explain(self.classifier, [e_img], method=method, target=int(np.argmax(p)), keep_images=False)
        ex = max(res, key=lambda r: r.probability)
        if self.mode != "crop":
            return resize_map(ex.heatmap, hw), ex.class_name
        x0, y0, x1, y1 = box
        full = np.zeros(hw, np.float32)
        full[y0:y1, x0:x1] = resize_map(ex.heatmap, (max(y1 - y0, 1), max(x1 - x0, 1)))[: y1 - y0, : x1 - x0]
        return full, ex.class_name


def load_pipeline(path: str | Path, device: str | torch.device | None = None, *,
                  max_pixels: int | None = None) -> SegmentClassifyPipeline:
    """Load a chained bundle (:mod:`medattn.bundle.chained`) as a :class:`SegmentClassifyPipeline`."""
    doc, seg, cls = read_chained_bundle(path, device, max_pixels=max_pixels)
    return SegmentClassifyPipeline(seg, cls, **settings_of(doc, path), device=device)
