"""``medattn.explain.explain``: maps for images through a bundle's own preprocessing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medattn.errors import ConfigError, DataError
from medattn.explain.cam import CAM_METHODS, check_method, compute_cams
from medattn.explain.layers import find_target_layer, get_layer
from medattn.explain.overlay import resize_map
from medattn.explain.perturbation import ProbabilityTarget
from medattn.explain.targets import TargetSpec, logits_of, resolve_targets

__all__ = ["Explanation", "explain", "METHODS", "source_name"]

METHODS = (*CAM_METHODS, "attention")


@dataclass
class Explanation:
    """One map: an input image explained for one class.

    Attributes:
        source: the input's name (file stem, or ``image_<i>``).
        item: the input's position in the call.
        class_index, class_name: the explained class (finding, segmentation class).
        probability: the model's probability of that class (segmentation: mean over the region).
        method: CAM method, or ``attention`` (the model's own deepest spatial attention map).
        layer: the CAM target layer (module name) or the attention module.
        heatmap: ``H×W`` map in [0, 1] at the model's input resolution.
        image: the input as decoded (``uint8``, original resolution), for overlays.
    """

    source: str
    item: int
    class_index: int
    class_name: str
    probability: float
    method: str
    layer: str
    heatmap: np.ndarray
    image: np.ndarray | None = None
    answer: dict[str, Any] | None = None
    """The image's answer from :meth:`Predictor.infer <medattn.bundle.Predictor.infer>` (probabilities,
    decision, warnings): the same answer as every other door gives."""

    def heatmap_at(self, shape: tuple[int, int] | None = None) -> np.ndarray:
        """The map resized to ``shape`` (default: the original image's ``H×W``)."""
        if shape is None:
            if self.image is None:
                return self.heatmap
            shape = self.image.shape[:2]
        return resize_map(self.heatmap, shape)

    @property
    def file_stem(self) -> str:
        """``<source>__<class>__<method>`` with characters unsafe in file names replaced."""
        raw = f"{self.source}__{self.class_name}__{self.method}"
        return "".join(c if c.isalnum() or c in "-_.+" else "_" for c in raw)


def source_name(item: Any, i: int) -> str:
    """Name of input ``i``: the file stem of a path, else ``image_<i>``."""
    if isinstance(item, (str, Path)):
        return Path(item).stem
    return f"image_{i:03d}"


def _thresholds(pred: Any) -> Any:
    if pred.task == "multilabel":
        return pred.meta.get("thresholds")
    return pred.threshold


def _attention_maps(model: torch.nn.Module, x: torch.Tensor) -> tuple[np.ndarray, str]:
    from medattn.explain.attention_maps import attention_maps

    maps = [m for m in attention_maps(model, x) if m.kind == "spatial"]
    if not maps:
        raise ConfigError(
            f"{type(model).__name__} has no spatial attention module; use a CAM method ({', '.join(CAM_METHODS)})"
        )
    v = maps[-1].values
    lo = v.reshape(len(v), -1).min(1)[:, None, None]
    hi = v.reshape(len(v), -1).max(1)[:, None, None]
    return ((v - lo) / np.maximum(hi - lo, 1e-12)).astype(np.float32), maps[-1].name


def _maps(net: torch.nn.Module, x: torch.Tensor, target: Any, method: str, layer: str | None, batch_size: int,
          scorecam_batch: int) -> tuple[np.ndarray, str]:
    """One map per row of ``x`` (the image, or its tiles) for ``target``."""
    if method == "attention":
        amap, name = _attention_maps(net, x)
        return amap, name
    name = layer or find_target_layer(net, (1, *x.shape[1:]))[0]
    return compute_cams(net, x, [target] * len(x), method=method, layer=name, batch_size=batch_size,
                        scorecam_batch=scorecam_batch), name


def _stitch(maps: np.ndarray, boxes: list[tuple[int, int]] | None, hw: tuple[int, ...], window: int) -> np.ndarray:
    """Tile maps placed at their tiles' positions (``H×W``; overlapping edge tiles: the later one)."""
    h, w = int(hw[0]), int(hw[1])
    full = np.zeros((max(h, window), max(w, window)), np.float32)
    for (y0, x0), m in zip(boxes or [], maps, strict=True):
        full[y0:y0 + window, x0:x0 + window] = resize_map(np.asarray(m, np.float32), (window, window))
    return full[:h, :w]


def _answer_logits(pred: Any, answer: dict[str, Any], logits: torch.Tensor) -> torch.Tensor:
    """A ``1×K`` logit row whose decision is the image-level answer of a tiled input (so ``top``
    explains the class the answer gives)."""
    names = pred.class_names
    p = np.asarray([answer["probabilities"][n] for n in names], np.float64)
    p = np.clip(p, 1e-7, 1 - 1e-7)
    if pred.task == "binary" and logits.shape[1] == 1:
        return torch.tensor([[float(np.log(p[1] / (1 - p[1])))]])
    if pred.task == "multiclass":
        return torch.tensor(np.log(p)[None], dtype=torch.float32)
    return torch.tensor(np.log(p / (1 - p))[None], dtype=torch.float32)


def _probability(answer: dict[str, Any], index: int, pred: Any) -> float:
    """The answer's probability of class ``index``."""
    return float(answer["probabilities"][pred.class_names[index]])


def explain(
    model: Any,
    images: Sequence[Any] | Any,
    *,
    method: str = "gradcam",
    target: str | int = "top",
    layer: str | None = None,
    batch_size: int = 16,
    scorecam_batch: int = 32,
    keep_images: bool = True,
) -> list[Explanation]:
    """Explain images with a bundle's model, preprocessed exactly as in training.

    Args:
        model: a :class:`medattn.bundle.Predictor` or the path of a bundle folder/zip.
        images: paths, PIL images or arrays (one item is accepted too).
        method: ``gradcam``, ``gradcam++``, ``xgradcam``, ``eigencam``, ``scorecam``, ``layercam``,
            or ``attention`` (the model's own deepest spatial attention map).
        target: ``top`` (the predicted label(s)), ``all`` (one map per class / finding), or a class
            name or index (see :func:`medattn.explain.targets.resolve_targets`).
        layer: target-layer module name; default: the last spatial map after the last attention block.
        batch_size: images per CAM pass.
        scorecam_batch: masked images per Score-CAM forward pass.
        keep_images: keep the decoded input in each result (needed for overlays).

    Returns:
        One :class:`Explanation` per (image, class), in input order.

    Raises:
        ConfigError: unknown method or target class. ModelError: unknown layer.
        DataError / BundleError: an unreadable image or bundle.
    """
    if isinstance(model, (str, Path)):
        from medattn.bundle import load_bundle

        model = load_bundle(model)
    if not hasattr(model, "prepare_input") or not hasattr(model, "model"):
        raise ConfigError(f"explain() needs a Predictor or a bundle path, got {type(model).__name__}")
    pred = model
    if str(method).lower() != "attention":
        method = check_method(method)
    else:
        method = "attention"
    if not isinstance(images, (list, tuple)):
        images = [images]
    if not images:
        raise DataError("no images to explain; pass at least one image file")
    if isinstance(target, str) and target.lower() not in ("top", "all"):
        from medattn.explain.targets import class_index

        class_index(target, pred.class_names)  # fail before any work
    net = pred.model
    if layer is not None:
        get_layer(net, layer)
    net.eval()
    from medattn.models.outputs import activation

    out: list[Explanation] = []
    for i, item in enumerate(images):
        # the one inference entry: decode, large-input rule, preparation, answer with its warnings
        prep = pred.prepare_input(pred.decode(item), name=source_name(item, i))
        answer = pred.conclude(prep, pred.forward(prep, batch_size))
        answer.pop("probability_map", None)
        answer.pop("instance_labels", None)
        x = prep.x
        with torch.no_grad():
            logits = torch.cat([logits_of(net(x[s : s + batch_size].to(pred.device))).float().cpu()
                                for s in range(0, len(x), batch_size)])
        act = activation(pred.task, logits.shape[1])
        tiled = prep.handling == "tiled"
        decide = _answer_logits(pred, answer, logits) if tiled else logits
        specs: list[TargetSpec] = resolve_targets(decide, pred.task, target, pred.class_names, _thresholds(pred),
                                                  seg_target=getattr(pred, "seg_target", "binary"))
        for s in specs:
            heat = _maps(net, x, s.target, method, layer, batch_size, scorecam_batch)
            lname = heat[1]
            hm = _stitch(heat[0], prep.boxes, prep.image.shape[:2], x.shape[-1]) if tiled else heat[0][0]
            prob = _probability(answer, s.class_index, pred) if pred.task != "segmentation" else \
                float(ProbabilityTarget(s.target, act)(logits[0]))
            out.append(Explanation(
                source=source_name(item, i), item=i, class_index=s.class_index, class_name=s.class_name,
                probability=prob, method=method, layer=str(lname), heatmap=np.asarray(hm, np.float32),
                image=prep.image if keep_images else None, answer=answer,
            ))
    return out
