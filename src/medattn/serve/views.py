"""What the API and the dashboard show about one image: CAMs (one class, or one per class),
native attention, AG-CNN crop, segmentation overlay, the preparation steps with their image-quality
numbers, the probability bars and the tile heatmap of a tiled input.

The maps come from :mod:`medattn.explain` (CAMs, targets, overlays) and the attention modules'
own recorded maps; this module only picks the inputs, serialises calls (CAM hooks are not
thread-safe) and renders RGB arrays. Explanations run on a private copy of the model, so hooks
never touch the copy that serves predictions.
"""

from __future__ import annotations

import copy
import io
import threading
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medattn.bundle import Predictor
from medattn.errors import ConfigError
from medattn.models.outputs import probabilities

__all__ = ["Explainer", "to_png", "DISPLAY_MAX", "with_colorbar", "preparation_steps", "probability_bars",
           "tile_heatmap", "likeliest_tile"]

DISPLAY_MAX = 384  # longest side of rendered overlays


def to_png(rgb: np.ndarray) -> bytes:
    """Encode an ``H×W×3`` (or ``H×W``) uint8 array as PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG")
    return buf.getvalue()


def with_colorbar(rgb: np.ndarray, low: str = "low", high: str = "high", width: int = 14) -> np.ndarray:
    """``rgb`` with a vertical colour bar of the overlays' colour map (``jet``) on its right,
    labelled ``high`` at the top and ``low`` at the bottom."""
    import matplotlib
    from PIL import Image, ImageDraw

    from medattn.explain.overlay import CMAP

    h, w = rgb.shape[:2]
    ramp = np.linspace(1, 0, h)[:, None].repeat(width, 1)
    bar = (matplotlib.colormaps[CMAP](ramp)[..., :3] * 255).astype(np.uint8)
    pad = 44
    canvas = Image.new("RGB", (w + 6 + width + pad, h), (255, 255, 255))
    canvas.paste(Image.fromarray(np.ascontiguousarray(rgb[..., :3])), (0, 0))
    canvas.paste(Image.fromarray(bar), (w + 6, 0))
    draw = ImageDraw.Draw(canvas)
    draw.text((w + 8 + width, 0), high, fill=(0, 0, 0))
    draw.text((w + 8 + width, h - 12), low, fill=(0, 0, 0))
    return np.asarray(canvas)


def _display(img: Any) -> np.ndarray:
    """The image as RGB uint8, shrunk so its longest side is at most :data:`DISPLAY_MAX`,
    and enlarged to at least 224 so small patches stay visible."""
    from PIL import Image

    a = np.asarray(img)
    im = Image.fromarray(np.repeat(a[..., None], 3, 2) if a.ndim == 2 else a[..., :3])
    w, h = im.size
    scale = min(DISPLAY_MAX / max(w, h), max(1.0, 224 / max(w, h)))
    if abs(scale - 1) > 1e-6:
        im = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
    return np.asarray(im)


class Explainer:
    """Render explanations of a :class:`Predictor`'s model for single images.

    Args:
        predictor: the served predictor (its model is copied, not hooked).
    """

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.model = copy.deepcopy(predictor.model).eval()
        self._pred = Predictor(model=self.model, meta=predictor.meta, device=predictor.device,
                               source=predictor.source, max_pixels=predictor.max_pixels)
        self._lock = threading.Lock()
        from medattn.attention import AttentionModule

        self._spatial = [n for n, m in self.model.named_modules()
                         if isinstance(m, AttentionModule) and m.attention_kind == "spatial"]
        self.arch = str(predictor.meta["architecture"]["name"])

    @property
    def methods(self) -> list[str]:
        """Explanation methods this bundle supports."""
        from medattn.explain.cam import CAM_METHODS

        out = list(CAM_METHODS) if self.predictor.task != "segmentation" else ["gradcam", "gradcam++"]
        if self._spatial:
            out.append("attention")
        if self.predictor.task == "segmentation":
            out.append("segmentation")
        if self.arch == "agcnn":
            out.append("agcnn")
        return out

    def render(self, image: Any, method: str = "gradcam++", target: str | int | None = None) -> dict[str, Any]:
        """Explain one PIL image → ``{"method", "target", "overlay" (RGB uint8), "heatmap"}``.

        CAMs and native attention come from :func:`medattn.explain.explain`.

        Raises:
            ConfigError: unknown method or target class.
        """
        key = str(method).lower()
        if key not in self.methods:
            raise ConfigError(f"method '{method}' is not available for this bundle; valid: {', '.join(self.methods)}")
        image = self._pred.decode(image)
        shown = _display(image)
        with self._lock, torch.inference_mode(False):
            if key == "segmentation":
                return self._segmentation(self._pred.prepare_input(image), shown)
            if key == "agcnn":
                return self._agcnn(self._pred.preprocess([image]), shown)
            ex = self._explain(image, key, target)
        from medattn.explain.overlay import overlay

        return {"method": key, "target": ex.class_name, "probability": ex.probability,
                "overlay": overlay(shown, ex.heatmap), "heatmap": ex.heatmap}

    def _explain(self, image: Any, method: str, target: str | int | None) -> Any:
        from medattn.explain import explain

        spec: str | int = "top" if target is None or str(target).lower() in ("", "top") else target
        res = explain(self._pred, [image], method=method, target=spec, keep_images=False)
        if not res:  # multilabel "top" with no finding above threshold: explain the likeliest one
            p = np.asarray(self._pred.predict_tensor(self._pred.preprocess([image]))[0]).reshape(-1)
            res = explain(self._pred, [image], method=method, target=int(np.argmax(p)), keep_images=False)
        return max(res, key=lambda e: e.probability)

    def render_classes(self, image: Any, method: str = "gradcam++") -> list[dict[str, Any]]:
        """One map per class (:func:`medattn.explain.explain` with ``target="all"``), in class order:
        ``[{"target", "probability", "overlay", "heatmap"}]``."""
        from medattn.explain import explain
        from medattn.explain.overlay import overlay

        image = self._pred.decode(image)
        shown = _display(image)
        with self._lock, torch.inference_mode(False):
            res = explain(self._pred, [image], method=method, target="all", keep_images=False)
        return [{"target": e.class_name, "probability": e.probability, "overlay": overlay(shown, e.heatmap),
                 "heatmap": e.heatmap} for e in sorted(res, key=lambda e: e.class_index)]

    def _segmentation(self, prep: Any, shown: np.ndarray) -> dict[str, Any]:
        with torch.no_grad():
            probs = self.predictor.forward(prep)
        lab = self.predictor.mask_from_probs(probs)
        t = torch.from_numpy(lab)[None, None].float()
        lab_big = F.interpolate(t, size=shown.shape[:2], mode="nearest")[0, 0].numpy().astype(np.int64)
        palette = np.array([[0, 0, 0], [255, 60, 60], [60, 200, 255], [80, 255, 120], [255, 220, 40],
                            [200, 90, 255]], np.float32)
        col = palette[np.clip(lab_big, 0, len(palette) - 1)]
        fg = (lab_big > 0)[..., None]
        out = np.where(fg, 0.55 * shown + 0.45 * col, shown).astype(np.uint8)
        return {"method": "segmentation", "target": "mask", "overlay": out, "mask": lab}

    def _agcnn(self, x: torch.Tensor, shown: np.ndarray) -> dict[str, Any]:
        fwd = getattr(self.model, "forward_all", None)
        if fwd is None:
            raise ConfigError("this model has no AG-CNN branches to show")
        with torch.no_grad():
            out = fwd(x.to(self.predictor.device))
        x1, y1, x2, y2 = (float(v) for v in out.boxes[0].tolist())
        h, w = x.shape[-2:]
        sy, sx = shown.shape[0] / h, shown.shape[1] / w
        W, H = shown.shape[1], shown.shape[0]
        bx0, by0 = min(max(int(x1 * sx), 0), W - 1), min(max(int(y1 * sy), 0), H - 1)
        bx1, by1 = min(max(int(round(x2 * sx)), bx0 + 1), W), min(max(int(round(y2 * sy)), by0 + 1), H)
        img = shown.copy()
        img[by0:by1, [bx0, bx1 - 1]] = (0, 255, 0)
        img[[by0, by1 - 1], bx0:bx1] = (0, 255, 0)
        crop = np.ascontiguousarray(shown[by0:by1, bx0:bx1])
        names = self.predictor.class_names
        branches = {k: dict(zip(names, probabilities(v, "multilabel")[0].tolist(), strict=False))
                    for k, v in (("global", out.global_logits), ("local", out.local_logits),
                                 ("fusion", out.fusion_logits))}
        return {"method": "agcnn", "target": "crop", "overlay": img, "crop": crop,
                "box": [x1, y1, x2, y2], "branches": branches}


def _rms_contrast(a: np.ndarray) -> float:
    """RMS contrast: the standard deviation of the grey levels scaled to [0, 1]."""
    g = a.astype(np.float64) / 255.0
    if g.ndim == 3:
        g = g[..., :3] @ np.array([0.299, 0.587, 0.114])  # luma weights (sum 1)
    return float(g.std())


def _resized(a: np.ndarray, hw: tuple[int, int], nearest: bool = False) -> np.ndarray:
    from PIL import Image

    if a.shape[:2] == tuple(hw):
        return a
    im = Image.fromarray(np.ascontiguousarray(a))
    return np.asarray(im.resize((int(hw[1]), int(hw[0])), Image.NEAREST if nearest else Image.BILINEAR))


def preparation_steps(predictor: Predictor, image: np.ndarray, *, resize: bool = True) -> list[dict[str, Any]]:
    """Each deterministic step the bundle applies to ``image`` (:meth:`Preparation.steps
    <medattn.data.transforms.Preparation.steps>`) with its image-quality numbers against the input.

    A step is compared with the input at the input's size (a resized step is resized back,
    bilinearly, for the numbers): PSNR (dB, ``inf`` when identical) and SSIM from
    :mod:`skimage.metrics`, and the RMS contrast of the step (grey levels in [0, 1]).

    Args:
        predictor: the served predictor.
        image: the decoded input.
        resize: include the resize to the model input (not for tiled inputs and segmentation,
            which the model sees at their own size).

    Returns:
        ``[{"name", "image" (uint8, the step's own size), "display" (uint8, at the input's display
        size; small steps enlarged by pixel repetition), "width", "height", "psnr", "ssim", "rms_contrast"}]``.
    """
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    steps = predictor.preparation.steps(image, resize=resize)
    ref = steps[0][1]
    shown_hw = _display(ref).shape[:2]
    out = []
    for name, a in steps:
        back = _resized(a, ref.shape[:2])
        same = np.array_equal(back, ref)
        side = min(ref.shape[:2])
        win = min(7, side if side % 2 else side - 1)
        ssim = 1.0 if same else (float(structural_similarity(
            ref, back, data_range=255, win_size=win, channel_axis=-1 if ref.ndim == 3 else None)) if win >= 3
            else float("nan"))
        out.append({"name": name, "image": a, "display": _resized(a, shown_hw, nearest=a.shape[0] < shown_hw[0]),
                    "width": int(a.shape[1]), "height": int(a.shape[0]),
                    "psnr": float("inf") if same else float(peak_signal_noise_ratio(ref, back, data_range=255)),
                    "ssim": ssim, "rms_contrast": _rms_contrast(a)})
    return out


def _figure_rgb(fig: Any) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def probability_bars(probs: dict[str, float], decided: list[str], thresholds: dict[str, float] | None = None,
                     title: str = "Probability of each class") -> np.ndarray:
    """A horizontal bar per class (probabilities on a fixed 0–1 axis, the value printed at the bar's end),
    the decided class(es) in a strong colour, and a threshold mark on the rows that have one.

    Args:
        probs: class → probability.
        decided: the classes the answer decided (drawn in the strong colour).
        thresholds: class → decision threshold (binary: the positive class; multi-label: every finding).
        title: the chart's title.
    """
    from matplotlib.figure import Figure

    names = list(probs)
    vals = [float(probs[n]) for n in names]
    fig = Figure(figsize=(6.4, 0.42 * len(names) + 0.9), dpi=100)
    ax = fig.add_subplot()
    y = np.arange(len(names))[::-1]
    ax.barh(y, vals, color=["#c0392b" if n in decided else "#9bb1c8" for n in names], height=0.6)
    thr = thresholds or {}
    for n, yi, v in zip(names, y, vals, strict=True):
        inside = v > 0.8
        ax.text(v - 0.01 if inside else v + 0.01, yi, f"{v:.2f}", va="center", ha="right" if inside else "left",
                fontsize=9, color="white" if inside else "black")
        if n in thr:  # the threshold as a black mark across the bar, its value under the class name
            ax.plot([thr[n], thr[n]], [yi - 0.42, yi + 0.42], color="black", lw=2)
    ax.set_yticks(y, [f"{n}\n(threshold {thr[n]:.2f})" if n in thr else n for n in names], fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.set_xlabel("probability", fontsize=9)
    ax.set_title(title, fontsize=10, loc="left")
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return _figure_rgb(fig)


def tile_heatmap(image: np.ndarray, grid: np.ndarray, window: int, label: str,
                 threshold: float | None = None) -> np.ndarray:
    """The per-tile scores of a tiled input painted over it at the tiles' positions, on a fixed 0–1
    colour scale with a labelled colour bar (and the decision threshold marked on it).

    Args:
        image: the decoded input (its own size).
        grid: ``rows × cols`` tile scores (``tile_scores`` of the answer).
        window: the tile side in pixels (the model input).
        label: what a tile's score is (e.g. ``P(tumour) per tile``).
        threshold: the decision threshold on that score, if any.
    """
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    from medattn.explain.overlay import CMAP
    from medattn.infer.tiling import tile_boxes

    a = np.asarray(image)
    H, W = a.shape[:2]
    g = np.asarray(grid, np.float32)
    boxes = tile_boxes(max(H, window), max(W, window), window, 0)
    ys, xs = sorted({b[0] for b in boxes}), sorted({b[1] for b in boxes})
    heat = np.full((max(H, window), max(W, window)), np.nan, np.float32)
    for y0, x0 in boxes:  # as the tiles were cut: the last row and column end at the image's edge
        heat[y0:y0 + window, x0:x0 + window] = g[ys.index(y0), xs.index(x0)]
    fig = Figure(figsize=(5.6, 4.6), dpi=100)
    ax = fig.add_subplot()
    ax.imshow(a, cmap="gray" if a.ndim == 2 else None)
    im = ax.imshow(heat[:H, :W], cmap=CMAP, norm=Normalize(0, 1), alpha=0.45)
    ax.set_title(f"{g.shape[0]}×{g.shape[1]} tiles of {window} px at the image's own scale", fontsize=9)
    ax.set_xlabel(f"{W} px", fontsize=8)
    ax.set_ylabel(f"{H} px", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label(label + ("" if threshold is None else f" (black line: threshold {threshold:.2f})"), fontsize=9)
    if threshold is not None:
        bar.ax.axhline(threshold, color="black", lw=2)
    fig.tight_layout()
    return _figure_rgb(fig)


def likeliest_tile(image: np.ndarray, grid: np.ndarray, window: int) -> tuple[np.ndarray, int, int]:
    """The tile of a tiled input with the highest score, cut exactly as the model saw it
    (:func:`medattn.infer.tiling.image_tiles`), with its row and column in ``grid``."""
    from medattn.infer.tiling import image_tiles

    boxes, tiles = image_tiles(np.asarray(image), window)
    g = np.nan_to_num(np.asarray(grid, np.float32), nan=-1.0)
    r, c = (int(v) for v in np.unravel_index(int(np.argmax(g)), g.shape))
    ys, xs = sorted({b[0] for b in boxes}), sorted({b[1] for b in boxes})
    return tiles[boxes.index((ys[r], xs[c]))], r, c
