"""CAM targets (callables on one item's model output) and the ``--target`` resolver.

Target specifications understood by :func:`resolve_targets`:

- ``"top"``: the predicted label(s): binary → the predicted class; multiclass → the arg-max class;
  multilabel → every finding at or above its threshold (the most probable one when none is);
  segmentation → every foreground class present in the predicted mask (the most frequent
  foreground class when none is).
- ``"all"``: one map per class / finding (binary: both classes; segmentation: every class).
- a class name or index: that class only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from medattn.errors import ConfigError
from medattn.models.outputs import main_logits, probabilities

__all__ = [
    "BinaryLogitTarget",
    "ClassTarget",
    "SegmentationTarget",
    "TargetSpec",
    "TASKS",
    "resolve_targets",
    "class_index",
    "logits_of",
]

TASKS = ("binary", "multiclass", "multilabel", "segmentation")


def logits_of(out: object) -> torch.Tensor:
    """The main logits of a model output (see :func:`medattn.models.outputs.main_logits`)."""
    return main_logits(out)


class BinaryLogitTarget:
    """Target of a single-logit binary model: the logit itself (positive class) or its negation."""

    def __init__(self, positive: bool = True) -> None:
        self.sign = 1.0 if positive else -1.0

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return self.sign * output.reshape(-1)[0]


class ClassTarget:
    """Target of a multi-output classifier (multiclass or multilabel): the logit of ``index``."""

    def __init__(self, index: int) -> None:
        self.index = int(index)

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return output.reshape(-1)[self.index]


class SegmentationTarget:
    """Sum of class ``index``'s logits over a region (the idea of pytorch-grad-cam's
    ``SemanticSegmentationTarget``).

    Args:
        index: output channel of the class; with a single-channel output, index 0 is the
            background (the negated logit) and index 1 the foreground.
        region: ``H×W`` boolean mask of the pixels to explain; ``None`` = the whole image.
        logit_channel: the channel holding a single foreground logit in a wider output (a hover
            head's nuclear-pixel channel 0; its distance maps are not classes): read like a
            single-channel output.
    """

    def __init__(self, index: int, region: np.ndarray | torch.Tensor | None = None,
                 logit_channel: int | None = None) -> None:
        self.index = int(index)
        self.region = None if region is None else torch.as_tensor(np.asarray(region), dtype=torch.float32)
        self.logit_channel = logit_channel

    def single(self, output: torch.Tensor) -> torch.Tensor | None:
        """The ``1×H×W`` single foreground logit of ``output`` (C×H×W), or ``None`` for a class head."""
        if self.logit_channel is not None:
            return output[self.logit_channel : self.logit_channel + 1]
        return output if output.shape[0] == 1 else None

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        if output.ndim != 3:
            raise ConfigError(
                f"a segmentation target needs a C×H×W output per image, got shape {tuple(output.shape)}; "
                "use a class target for classifiers"
            )
        one = self.single(output)
        if one is not None:
            logit = one[0] if self.index >= 1 else -one[0]
        else:
            logit = output[self.index]
        if self.region is None:
            return logit.sum()
        return (logit * self.region.to(logit.device, logit.dtype)).sum()


@dataclass
class TargetSpec:
    """One map to compute: which item, which class, and the callable target."""

    item: int
    class_index: int
    class_name: str
    target: object


def class_index(spec: str | int, class_names: Sequence[str]) -> int:
    """Index of class ``spec`` (a name or an index) or a :class:`ConfigError` listing the classes."""
    names = list(class_names)
    if isinstance(spec, (int, np.integer)) or (isinstance(spec, str) and spec.lstrip("-").isdigit()
                                               and spec not in names):
        idx = int(spec)
        if not 0 <= idx < len(names):
            raise ConfigError(
                f"target class {idx} is out of range: the model has {len(names)} classes "
                f"(0..{len(names) - 1}: {', '.join(names)})"
            )
        return idx
    if spec in names:
        return names.index(spec)
    lower = [n.lower() for n in names]
    if isinstance(spec, str) and spec.lower() in lower:
        return lower.index(spec.lower())
    raise ConfigError(f"unknown target '{spec}'; use top, all, or one of the classes: {', '.join(names)}")


def _seg_classes(logits: torch.Tensor) -> torch.Tensor:
    """Predicted class per pixel (``B×H×W``) of segmentation logits."""
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(1)


def resolve_targets(
    logits: torch.Tensor,
    task: str,
    spec: str | int,
    class_names: Sequence[str],
    thresholds: Sequence[float] | float | None = None,
    seg_target: str = "binary",
) -> list[TargetSpec]:
    """Turn a ``--target`` spec into one :class:`TargetSpec` per map to compute.

    Args:
        logits: the model's raw output for the batch (``B×K`` or ``B×K×H×W``).
        task: ``binary`` (single logit), ``multiclass``, ``multilabel`` or ``segmentation``.
        spec: ``"top"``, ``"all"``, a class name or a class index.
        class_names: names in output order (binary: ``[negative, positive]``).
        thresholds: decision threshold(s) on probabilities (binary / multilabel ``top``).
        seg_target: segmentation head kind; a ``hover`` head is explained by its nuclear-pixel
            logit (channel 0) as a single-channel head.

    Raises:
        ConfigError: unknown task, unknown class or an index out of range.
    """
    if task not in TASKS:
        raise ConfigError(f"unknown task '{task}'; valid: {', '.join(TASKS)}")
    names = list(class_names)
    key = spec.lower() if isinstance(spec, str) else spec
    hover = task == "segmentation" and seg_target == "hover"
    if hover:
        logits = logits[:, :1]
    n_out = logits.shape[1]
    if task == "binary" and n_out != 1:
        task = "multiclass"  # a two-logit binary model is explained like a multiclass one
    expected = 2 if task == "binary" or (task == "segmentation" and n_out == 1) else n_out
    if len(names) != expected:
        names = names[:expected] if len(names) > expected else names + [
            f"class_{i}" for i in range(len(names), expected)]
    b = logits.shape[0]
    out: list[TargetSpec] = []
    fixed = None if key in ("top", "all") else class_index(spec, names)
    det = logits.detach().float()
    for i in range(b):
        if fixed is not None:
            chosen = [fixed]
        elif key == "all":
            chosen = list(range(len(names)))
        elif task == "binary":
            th = float(thresholds if isinstance(thresholds, (int, float)) else 0.5)
            chosen = [int(probabilities(det[i:i + 1, :1], task)[0, 0].item() >= th)]
        elif task == "multiclass":
            chosen = [int(det[i].argmax())]
        elif task == "multilabel":
            p = probabilities(det[i:i + 1], task)[0].cpu().numpy()
            th = np.full(len(p), 0.5) if thresholds is None else np.broadcast_to(
                np.asarray(thresholds, dtype=np.float64), p.shape)
            chosen = [int(j) for j in np.nonzero(p >= th)[0]] or [int(np.argmax(p))]
        else:
            pred = _seg_classes(det[i : i + 1])[0]
            counts = torch.bincount(pred.reshape(-1), minlength=len(names))
            chosen = [int(c) for c in range(1, len(names)) if counts[c] > 0] or (
                [int(counts[1:].argmax()) + 1] if len(names) > 1 else [0])
        for c in chosen:
            if task == "binary":
                tg: object = BinaryLogitTarget(positive=c == 1)
            elif task == "segmentation":
                region = (_seg_classes(det[i : i + 1])[0] == c).cpu().numpy()
                tg = SegmentationTarget(c, region if region.any() else None, 0 if hover else None)
            else:
                tg = ClassTarget(c)
            out.append(TargetSpec(item=i, class_index=c, class_name=names[c], target=tg))
    return out
