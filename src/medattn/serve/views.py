"""What the API and the dashboard show about one image: CAMs, native attention, AG-CNN crop,
segmentation overlay.

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

__all__ = ["Explainer", "to_png", "DISPLAY_MAX", "with_colorbar"]

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
