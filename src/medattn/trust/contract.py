"""Input contract: what the model saw in training, and checks of new inputs against it.

At training, :func:`fit_contract` reads a sample of the raw training images (before resizing)
and records their size range, aspect ratio, whether they are colour or grey, and per-channel
intensity statistics (quantiles of each image's channel means and of its contrast). At prediction
time :func:`check_image` compares one decoded image with that record and returns warnings:

- ``input_size``: much larger (> 2x the largest side seen) → "tile it or use `medattn slide`";
  much smaller (< 1/2 of the smallest side seen) → it would be enlarged;
- ``aspect``: aspect ratio far outside the training range (it would be squashed);
- ``channels``: a grey image for a colour-trained model, or the other way round;
- ``intensity``: channel means or contrast outside the training range (with a margin);
- ``scale`` (:func:`check_scale`): the input declares a resolution (TIFF/DICOM/PNG header, ``--mpp``,
  REST ``mpp``) more than 25% away from the bundle's ``data.mpp`` at the model's input, or the
  objects in it are much coarser or finer than in every training image (the fine-detail share of
  :func:`medattn.trust.ood.input_features`, recorded as ``object_scale``), so a 40× tile sent to a
  2.5× model is caught without metadata. A bundle with a ``data.mpp`` notes ``scale_unknown`` for
  inputs that declare no resolution (a note, not a warning).

Scale is warned about, never corrected: rescaling by a declared resolution would add a
preparation step the model never trained with and would silently change answers when a header
is wrong (screenshots, re-exports); the warning names the fix (resample, or `medattn slide`, which
reads slides at the bundle's scale).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["image_stats", "summarise_stats", "check_image", "warning", "size_text", "SIZE_FACTOR", "ASPECT_FACTOR",
           "object_scale_record", "check_scale", "bundle_mpp", "MPP_TOLERANCE", "OBJECT_SCALE_MARGIN"]

SIZE_FACTOR = 2.0
ASPECT_FACTOR = 1.5
_GREY_CHROMA = 0.02  # mean channel spread below which an image counts as grey
_QS = (0.005, 0.5, 0.995)
MPP_TOLERANCE = 0.25
"""Relative difference of resolutions above which an input is warned about (``scale``)."""
OBJECT_SCALE_MARGIN = 0.9
"""An input is warned about when its fine-detail share is under this × the 0.5th percentile of the
training images (or over the 99.5th percentile / this)."""
_OS_QS = (0.005, 0.05, 0.5, 0.95, 0.995)


def warning(code: str, message: str) -> dict[str, str]:
    """One warning as it appears in predictions: ``{"code", "message"}``."""
    return {"code": code, "message": message}


def image_stats(img: Any) -> dict[str, Any]:
    """Size, chroma (mean max−min channel spread, 0..1), channel means and contrast of one image
    (a PIL image or ``H×W[×C]`` uint8 array)."""
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[..., None]
    arr = arr[..., :3].astype(np.float32) / 255.0
    h, w = arr.shape[:2]
    step = max(1, int(np.sqrt(h * w / 65536)))  # statistics on at most ~256×256 pixels
    a = arr[::step, ::step]
    chroma = float((a.max(-1) - a.min(-1)).mean()) if a.shape[-1] > 1 else 0.0
    means = a.reshape(-1, a.shape[-1]).mean(0)
    if means.size == 1:
        means = np.repeat(means, 3)
    return {"h": int(h), "w": int(w), "chroma": chroma, "mean": [float(v) for v in means],
            "contrast": float(a.mean(-1).std())}


def size_text(contract: dict[str, Any]) -> str:
    """The training image sizes of a contract for people: ``"50×50 px"`` when every image had that
    size, else the median width × height and the range of sides, e.g.
    ``"50×50 px (27–50 px on a side in the training data)"``."""
    hmin, hmed, hmax = (int(v) for v in contract["height"])
    wmin, wmed, wmax = (int(v) for v in contract["width"])
    if (hmin, wmin) == (hmax, wmax):
        return f"{wmed}×{hmed} px"
    lo, hi = min(hmin, wmin), max(hmax, wmax)
    return f"{wmed}×{hmed} px ({lo}–{hi} px on a side in the training data)"


def _q(values: list[float]) -> list[float]:
    return [round(float(v), 5) for v in np.quantile(np.asarray(values, np.float64), _QS)]


def summarise_stats(stats: list[dict[str, Any]], *, in_chans: int, input_size: Any,
                    resolution: Any = None) -> dict[str, Any]:
    """The contract from the stats of a sample of training images (JSON-able numbers)."""
    hs, ws = [s["h"] for s in stats], [s["w"] for s in stats]
    aspect = [s["w"] / s["h"] for s in stats]
    chroma = [s["chroma"] for s in stats]
    return {
        "n_sampled": len(stats), "in_chans": int(in_chans), "input_size": input_size,
        "height": [int(min(hs)), int(np.median(hs)), int(max(hs))],
        "width": [int(min(ws)), int(np.median(ws)), int(max(ws))],
        "aspect": [round(min(aspect), 4), round(max(aspect), 4)],
        "colour": "grey" if float(np.quantile(chroma, 0.9)) < _GREY_CHROMA else "colour",
        "chroma": _q(chroma),
        "channel_mean": [_q([s["mean"][c] for s in stats]) for c in range(3)],
        "contrast": _q([s["contrast"] for s in stats]),
        "resolution": resolution,
        "quantiles": list(_QS),
    }


def _outside(v: float, q: list[float], margin: float) -> bool:
    lo, hi = q[0], q[-1]
    pad = max(margin, 0.25 * (hi - lo))
    return v < lo - pad or v > hi + pad


def check_image(contract: dict[str, Any], img: Any) -> list[dict[str, str]]:
    """Warnings for one image (PIL or array) against a bundle's ``contract``."""
    if not contract:
        return []
    s = image_stats(img)
    out = []
    h, w = s["h"], s["w"]
    hmin, _, hmax = contract["height"]
    wmin, _, wmax = contract["width"]
    seen = size_text(contract)
    if max(h / max(hmax, 1), w / max(wmax, 1)) > SIZE_FACTOR:
        out.append(warning("input_size", f"image is {w}×{h} px but the model was trained on {seen} images; "
                                         f"shrinking it to the model input loses the detail the model "
                                         f"relies on: tile it or use `medattn slide`"))
    elif min(h / max(hmin, 1), w / max(wmin, 1)) < 1 / SIZE_FACTOR:
        out.append(warning("input_size", f"image is {w}×{h} px, far smaller than the training images ({seen}); "
                                         f"it is enlarged to the model input and may be at the wrong scale"))
    amin, amax = contract["aspect"]
    asp = w / h
    if asp < amin / ASPECT_FACTOR or asp > amax * ASPECT_FACTOR:
        out.append(warning("aspect", f"aspect ratio {asp:.2f} (width/height) is outside the training range "
                                     f"{amin:.2f}–{amax:.2f}; the image is squashed when resized: crop or tile it"))
    colour = contract.get("colour")
    if colour == "colour" and s["chroma"] < _GREY_CHROMA / 2:
        out.append(warning("channels", "grey image given to a model trained on colour images; "
                                       "check the modality and stain"))
    elif colour == "grey" and s["chroma"] > 4 * _GREY_CHROMA:
        out.append(warning("channels", "colour image given to a model trained on grey images; "
                                       "check the modality"))
    bad = [c for c, name in enumerate("RGB") if _outside(s["mean"][c], contract["channel_mean"][c], 0.05)]
    if bad:
        vals = ", ".join(f"{'RGB'[c]} {s['mean'][c]:.2f} (seen {contract['channel_mean'][c][0]:.2f}–"
                         f"{contract['channel_mean'][c][-1]:.2f})" for c in bad)
        out.append(warning("intensity", f"mean intensity out of the training range: {vals}; check staining, "
                                        "exposure and bit depth"))
    elif _outside(s["contrast"], contract["contrast"], 0.03):
        lo, hi = contract["contrast"][0], contract["contrast"][-1]
        out.append(warning("intensity", f"contrast {s['contrast']:.3f} is outside the training range "
                                        f"{lo:.3f}–{hi:.3f}; check exposure and bit depth"))
    return out


def object_scale_record(inputs: np.ndarray) -> dict[str, Any]:
    """The contract's ``object_scale`` from input statistics of training items
    (:func:`medattn.trust.ood.input_features` rows: the last two columns are the fine-detail share
    and the blob scale in model pixels)."""
    a = np.asarray(inputs, np.float64)
    return {"statistic": "fine-detail share of the darkness image at the model input (1 - blur(σ=1) over spread)",
            "quantiles": list(_OS_QS), "fine_detail": [round(float(v), 5) for v in np.quantile(a[:, -2], _OS_QS)],
            "blob_scale_px": [round(float(v), 4) for v in np.quantile(a[:, -1], _OS_QS)], "n": int(len(a))}


def bundle_mpp(meta: dict[str, Any]) -> float | None:
    """µm per model-input pixel of a bundle (its ``mpp`` or its recipe's ``data.mpp``), or None."""
    v = meta.get("mpp") or ((meta.get("recipe") or {}).get("data") or {}).get("mpp")
    return float(v) if v else None


def check_scale(meta: dict[str, Any], *, inputs: np.ndarray | None = None, mpp: float | None = None,
                mpp_source: str | None = None, zoom: float = 1.0) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """``(warnings, notes)`` about the scale of one input.

    Args:
        meta: the bundle's metadata (``mpp`` / recipe ``data.mpp``, ``contract.object_scale``).
        inputs: input-statistics rows of what the model sees (one row, or one per tile: the median counts).
        mpp: µm per pixel the input declares (header or user), or None.
        mpp_source: where ``mpp`` came from (for the message).
        zoom: model-input pixels per input pixel (a resized input: model side / image side; tiles: 1).
    """
    warns: list[dict[str, str]] = []
    notes: list[dict[str, str]] = []
    model = bundle_mpp(meta)
    if model:
        if mpp:
            eff = float(mpp) / float(zoom)
            if abs(eff / model - 1) > MPP_TOLERANCE:
                at = f" ({mpp:g} µm/px as given, resized to the model input)" if abs(zoom - 1) > 1e-6 else ""
                warns.append(warning("scale", f"the input is at {eff:.3g} µm per model pixel{at} ({mpp_source or 'declared'}) "
                                              f"but the model was trained at {model:g} µm/px ({eff / model:.2g}×): "
                                              "resample it to the model's scale, or use `medattn slide`, which "
                                              "reads slides at the bundle's scale"))
        else:
            notes.append(warning("scale_unknown", f"the input declares no resolution; the model expects {model:g} µm "
                                                  "per pixel (pass --mpp, or the REST field mpp, to have it checked)"))
    rec = (meta.get("contract") or {}).get("object_scale")
    if rec and inputs is not None and len(inputs):
        v = float(np.median(np.asarray(inputs, np.float64)[:, -2]))
        lo, hi = float(rec["fine_detail"][0]), float(rec["fine_detail"][-1])
        if v < lo * OBJECT_SCALE_MARGIN:
            warns.append(warning("scale", f"the image detail is much coarser than in every training image (fine-detail "
                                          f"share {v:.3f}, training {lo:.3f}–{hi:.3f}): objects look larger than the "
                                          "model saw, as at a higher magnification (or the image is blurred or "
                                          "enlarged); resample it to the training scale"))
        elif v > hi / OBJECT_SCALE_MARGIN:
            warns.append(warning("scale", f"the image detail is much finer than in every training image (fine-detail "
                                          f"share {v:.3f}, training {lo:.3f}–{hi:.3f}): objects look smaller than the "
                                          "model saw, as at a lower magnification (or the image is noisy)"))
    return warns, notes
