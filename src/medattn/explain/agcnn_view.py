"""AG-CNN view: what the attention-guided crop saw and what each branch concluded.

For each image: the global branch's heatmap (max over channels of |last features|, min-max
normalised), the thresholded mask's largest component, the crop box on the image, the local
crop the local branch classified, and the global, local and fusion probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from medattn.errors import ModelError

__all__ = ["AGCNNView", "agcnn_view", "agcnn_figure"]


@dataclass
class AGCNNView:
    """One image's AG-CNN view.

    Attributes:
        heatmap: ``H×W`` global-branch heatmap in [0, 1] at input resolution.
        mask: ``H×W`` boolean: the thresholded heatmap's largest connected component.
        box: ``(x1, y1, x2, y2)`` crop box in input pixels (the model's own box).
        crop: ``h×w×C`` local crop (display values in [0, 1] when ``mean``/``std`` were given).
        probabilities: ``{"global" | "local" | "fusion": K probabilities}`` (sigmoid).
        threshold: τ used (a number, or the image's Otsu value).
    """

    heatmap: np.ndarray
    mask: np.ndarray
    box: tuple[float, float, float, float]
    crop: np.ndarray
    probabilities: dict[str, np.ndarray]
    threshold: float


def _outputs(out: object) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    if isinstance(out, dict):
        keys = ("global", "local", "fusion", "boxes")
        alt = ("global_logits", "local_logits", "fusion_logits", "boxes")
        return tuple(out[k] if k in out else out[a] for k, a in zip(keys, alt, strict=True))  # type: ignore[return-value]
    g, loc, f, b = out  # type: ignore[misc]
    return g, loc, f, b


@torch.no_grad()
def agcnn_view(
    model: nn.Module,
    x: torch.Tensor,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> list[AGCNNView]:
    """Views of a batch of preprocessed images ``B×C×H×W`` through an AG-CNN.

    Args:
        model: a model with ``forward_all(x)`` → global, local, fusion logits and boxes, and a
            ``global_branch`` exposing ``forward_features`` (``medattn.models`` ``agcnn``).
        x: preprocessed input.
        mean, std: the normalisation of ``x``; when given, the crop is returned de-normalised
            (display values in [0, 1]).

    Raises:
        ModelError: the model is not an AG-CNN.
    """
    if not hasattr(model, "forward_all") or not hasattr(model, "global_branch"):
        raise ModelError(f"{type(model).__name__} is not an AG-CNN (no forward_all/global_branch); "
                         "use medattn explain with a CAM method instead")
    from medattn.models.agcnn_crop import (
        attention_heatmap,
        crop_boxes,
        largest_component,
        otsu_threshold,
    )

    was_training = model.training
    model.eval()
    try:
        dev = next(model.parameters()).device
        x = x.to(dev)
        g, loc, f, boxes = _outputs(model.forward_all(x))
        feats = model.global_branch.forward_features(x)
        size = tuple(x.shape[-2:])
        heat = attention_heatmap(feats, size)
        tau = getattr(model, "threshold", 0.7)
        thr = otsu_threshold(heat) if isinstance(tau, str) else torch.full((len(x),), float(tau), device=heat.device)
        mask = largest_component(heat > thr[:, None, None])
        disp = x
        if mean is not None and std is not None:
            m = torch.as_tensor(list(mean), device=dev, dtype=x.dtype).view(1, -1, 1, 1)
            s = torch.as_tensor(list(std), device=dev, dtype=x.dtype).view(1, -1, 1, 1)
            disp = (x * s + m).clamp(0, 1)
        bx = boxes.float()
        side = int(getattr(model, "crop_size", min(size)))  # exactly what the local branch saw
        crops = crop_boxes(disp, bx.to(disp.dtype), side)
        from medattn.models.outputs import probabilities

        probs = {k: probabilities(v, "multilabel").cpu().numpy() for k, v in (("global", g), ("local", loc), ("fusion", f))}
    finally:
        model.train(was_training)
    out = []
    for i in range(len(x)):
        out.append(AGCNNView(
            heatmap=heat[i].cpu().numpy().astype(np.float32),
            mask=mask[i].cpu().numpy().astype(bool),
            box=tuple(float(v) for v in bx[i].cpu().tolist()),  # type: ignore[arg-type]
            crop=crops[i].permute(1, 2, 0).cpu().numpy().astype(np.float32),
            probabilities={k: v[i] for k, v in probs.items()},
            threshold=float(thr[i]),
        ))
    return out


def agcnn_figure(view: AGCNNView, image: np.ndarray, class_names: Sequence[str], top: int = 5) -> bytes:
    """PNG bytes: image with crop box, heatmap, mask, local crop, and the branches' top probabilities.

    Args:
        view: one :class:`AGCNNView`.
        image: the input as displayed (``uint8`` or [0, 1]), at the model's input resolution.
        class_names: names of the outputs.
        top: how many classes (by fusion probability) to chart.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from medattn.explain.overlay import CMAP, _png_bytes, resize_map

    img = np.asarray(image)
    hm = resize_map(view.heatmap, img.shape[:2])
    sy, sx = img.shape[0] / view.heatmap.shape[0], img.shape[1] / view.heatmap.shape[1]
    x1, y1, x2, y2 = view.box
    fig, ax = plt.subplots(1, 5, figsize=(13, 2.9), gridspec_kw={"width_ratios": [1, 1, 1, 1, 1.5]})
    try:
        gray = "gray" if img.ndim == 2 else None
        ax[0].imshow(img, cmap=gray)
        ax[0].add_patch(Rectangle((x1 * sx, y1 * sy), (x2 - x1) * sx, (y2 - y1) * sy, fill=False, ec="lime", lw=2))
        ax[0].set_title("input + crop box", fontsize=9)
        ax[1].imshow(hm, cmap=CMAP, vmin=0, vmax=1)
        ax[1].set_title("global heatmap", fontsize=9)
        ax[2].imshow(view.mask, cmap="gray")
        ax[2].set_title(f"mask (τ={view.threshold:.2f})", fontsize=9)
        crop = view.crop
        crop = crop[..., 0] if crop.shape[-1] == 1 else crop
        ax[3].imshow(np.clip(crop, 0, 1) if crop.max() <= 1.0 else crop, cmap="gray" if crop.ndim == 2 else None)
        ax[3].set_title("local crop", fontsize=9)
        for a in ax[:4]:
            a.axis("off")
        names = list(class_names)
        fusion = view.probabilities["fusion"]
        order = np.argsort(-fusion)[: min(top, len(fusion))]
        ypos = np.arange(len(order))
        for k, (branch, colour) in enumerate((("global", "tab:blue"), ("local", "tab:orange"), ("fusion", "tab:green"))):
            ax[4].barh(ypos + (k - 1) * 0.27, view.probabilities[branch][order], height=0.27, color=colour, label=branch)
        ax[4].set_yticks(ypos, [names[j] if j < len(names) else str(j) for j in order], fontsize=8)
        ax[4].invert_yaxis()
        ax[4].set_xlim(0, 1)
        ax[4].legend(fontsize=7, loc="lower right")
        ax[4].set_title("probabilities", fontsize=9)
        fig.tight_layout()
        return _png_bytes(fig)
    finally:
        plt.close(fig)
