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

from medattn.bundle import Predictor, main_output
from medattn.errors import ConfigError

__all__ = ["Explainer", "to_png", "DISPLAY_MAX"]

DISPLAY_MAX = 384  # longest side of rendered overlays


def to_png(rgb: np.ndarray) -> bytes:
    """Encode an ``H×W×3`` (or ``H×W``) uint8 array as PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG")
    return buf.getvalue()


def _display(img: Any) -> np.ndarray:
    """The image as RGB uint8, shrunk so its longest side is at most :data:`DISPLAY_MAX`,
    and enlarged to at least 224 so small patches stay visible."""
    from PIL import Image

    im = img.convert("RGB")
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

    def target_index(self, target: str | int | None) -> int | None:
        """Class index of ``target`` (name or index); ``None``/``"top"`` means the top prediction."""
        if target is None or (isinstance(target, str) and target.lower() in ("", "top")):
            return None
        from medattn.explain.targets import class_index

        return class_index(target, self.predictor.class_names)

    def render(self, image: Any, method: str = "gradcam++", target: str | int | None = None) -> dict[str, Any]:
        """Explain one PIL image → ``{"method", "target", "overlay" (RGB uint8), "heatmap"}``.

        Raises:
            ConfigError: unknown method or target class.
        """
        key = str(method).lower()
        if key not in self.methods:
            raise ConfigError(f"method '{method}' is not available for this bundle; valid: {', '.join(self.methods)}")
        x = self.predictor.preprocess([image])
        shown = _display(image)
        with self._lock, torch.inference_mode(False):
            if key == "attention":
                heat, name = self._attention(x), "attention"
            elif key == "segmentation":
                return self._segmentation(x, shown)
            elif key == "agcnn":
                return self._agcnn(x, shown)
            else:
                heat, name = self._cam(x, key, self.target_index(target))
        from medattn.explain.overlay import overlay

        return {"method": key, "target": name, "overlay": overlay(shown, heat), "heatmap": heat}

    def _cam(self, x: torch.Tensor, method: str, idx: int | None) -> tuple[np.ndarray, str]:
        from medattn.explain.cam import compute_cams
        from medattn.explain.targets import BinaryLogitTarget, ClassTarget, SegmentationTarget

        names = self.predictor.class_names
        with torch.no_grad():
            logits = main_output(self.model(x))
        if idx is None:
            if self.predictor.task == "binary" and logits.shape[1] == 1:
                idx = int(torch.sigmoid(logits[0, 0]).item() >= self.predictor.threshold)
            elif logits.ndim == 4:
                idx = 1 if logits.shape[1] == 1 else int(logits[0].mean((1, 2))[1:].argmax()) + 1
            else:
                idx = int(logits[0].argmax())
        if logits.ndim == 4:
            tg: object = SegmentationTarget(min(idx, logits.shape[1] - 1))
        elif logits.shape[1] == 1:
            tg = BinaryLogitTarget(positive=idx == 1)
        else:
            tg = ClassTarget(idx)
        maps = compute_cams(_Logits(self.model), x, targets=[tg], method=method)
        return maps[0], names[idx] if idx < len(names) else str(idx)

    def _attention(self, x: torch.Tensor) -> np.ndarray:
        """Mean of the recorded spatial attention maps, each upsampled to the input size."""
        from medattn.attention import recording

        with recording(self.model) as mods, torch.no_grad():
            self.model(x)
            maps = [m.last_attention for _, m in mods
                    if m.attention_kind == "spatial" and m.last_attention is not None and m.last_attention.ndim == 4]
            if not maps:
                raise ConfigError("this model recorded no spatial attention map")
            up = [F.interpolate(m[:1].float().mean(1, keepdim=True), size=x.shape[-2:], mode="bilinear",
                                align_corners=False)[0, 0] for m in maps]
        heat = torch.stack(up).mean(0).numpy()
        return heat

    def _segmentation(self, x: torch.Tensor, shown: np.ndarray) -> dict[str, Any]:
        with torch.no_grad():
            probs = self.predictor.predict_tensor(x)[0]
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
        with torch.no_grad():
            out = self.model(x)
        boxes = out.get("boxes") if isinstance(out, dict) else None
        if boxes is None:
            raise ConfigError("this AG-CNN model does not report its crop box")
        x1, y1, x2, y2 = (float(v) for v in torch.as_tensor(boxes)[0][-4:].tolist())
        h, w = x.shape[-2:]
        sy, sx = shown.shape[0] / h, shown.shape[1] / w
        bx = [round(x1 * sx), round(y1 * sy), max(round(x2 * sx), round(x1 * sx) + 1), max(round(y2 * sy), round(y1 * sy) + 1)]
        img = shown.copy()
        img[bx[1]:bx[3], [min(bx[0], img.shape[1] - 1), min(bx[2] - 1, img.shape[1] - 1)]] = (0, 255, 0)
        img[[min(bx[1], img.shape[0] - 1), min(bx[3] - 1, img.shape[0] - 1)], bx[0]:bx[2]] = (0, 255, 0)
        crop = shown[bx[1]:bx[3], bx[0]:bx[2]]
        branches = {k: torch.sigmoid(main_output(v)).reshape(-1).tolist() for k, v in out.items()
                    if k in ("global", "local", "fusion") and isinstance(v, torch.Tensor)}
        return {"method": "agcnn", "target": "crop", "overlay": img, "crop": crop,
                "box": [x1, y1, x2, y2], "branches": branches}


class _Logits(torch.nn.Module):
    """Wrap a model whose forward returns a dict/tuple so CAM targets see its logits."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.inner = model
        for attr in ("cam_target_layer",):
            if hasattr(model, attr):
                setattr(self, attr, f"inner.{getattr(model, attr)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return main_output(self.inner(x))
