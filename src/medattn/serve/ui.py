"""Web dashboard (Gradio Blocks) mounted at ``/`` of the API app.

Upload an image (or a DICOM file) or pick a built-in sample; see the top prediction with its
probability (calibrated when the bundle has a temperature fitted on validation), the conformal
prediction set and every input warning (size, channels, intensity, out-of-distribution) above the
probability bars, Grad-CAM++ and native-attention overlays for a chosen class (each with a colour
bar and a caption saying what it is), the AG-CNN crop (AG-CNN bundles), the segmentation overlay
(U-Net bundles), the model card ("research use only"; a banner when the model was trained on
synthetic data), and download the result as JSON.
"""

from __future__ import annotations

import hmac
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from medattn.bundle import Predictor
from medattn.errors import MedattnError
from medattn.io import atomic_write_json
from medattn.serve.limits import Limits
from medattn.serve.views import Explainer

__all__ = ["build_ui", "mount_ui"]


def _headline(result: dict[str, Any]) -> str:
    if "class_fractions" in result:
        fr = result["class_fractions"]
        fg = {k: v for k, v in list(fr.items())[1:]} or fr
        k = max(fg, key=fg.get)
        return f"### Segmentation: **{k}** covers {100 * fg[k]:.1f}% of the image"
    probs = result["probabilities"]
    if "labels" in result:
        found = ", ".join(result["labels"]) or "no finding above its threshold"
        top = max(probs, key=probs.get)
        return f"### Findings: **{found}**  \nTop: {top} ({100 * probs[top]:.1f}%)"
    label = result["label"]
    cal = result.get("calibrated_probabilities")
    if cal:
        return f"### Prediction: **{label}**, calibrated probability {100 * cal[label]:.1f}%"
    return f"### Prediction: **{label}**, probability {100 * probs[label]:.1f}% (not calibrated)"


def _trust_md(result: dict[str, Any]) -> str:
    """The conformal set and the input warnings, shown above the probability bars."""
    lines = []
    if result.get("handling") == "tiled":
        lines.append(f"**Tiled**: the {result['width']}×{result['height']} px image was seen as {result['tiles']} "
                     f"tiles at its own scale (never shrunk); the image is positive when any tile is (highest tile "
                     f"{100 * result['tile_max']:.1f}%, mean {100 * result['tile_mean']:.1f}%).")
        if "tile_sets" in result:
            sets = ", ".join(f"{{{k.replace('|', ', ')}}} {100 * v:.0f}%" for k, v in result["tile_sets"].items())
            lines.append(f"**Prediction sets of the tiles** ({100 * (1 - result['alpha']):.0f}% conformal): {sets}")
        if "tile_ood_share" in result:
            lines.append(f"Tiles out of distribution: {100 * result['tile_ood_share']:.0f}%")
    if "prediction_set" in result:
        s = result["prediction_set"]
        shown = ", ".join(s) if isinstance(s, list) else "; ".join(f"{k}: {'/'.join(v) or '—'}" for k, v in s.items())
        lines.append(f"**Prediction set** ({100 * (1 - result['alpha']):.0f}% conformal): {{{shown}}} → "
                     f"**{result['set_label']}**")
    warns = result.get("warnings") or []
    if warns:
        lines.append(f"**⚠ {len(warns)} warning(s)**: the prediction may not be valid for this image:\n"
                     + "\n".join(f"- **{w['code']}**: {w['message']}" for w in warns))
    else:
        lines.append("No input warnings: the image matches what the model was trained on.")
    if "ood_score" in result and "uncertainty" in result:
        lines.append(f"Out-of-distribution score {result['ood_score']:.1f} (threshold {result['ood_threshold']:.1f}); "
                     f"entropy {result['uncertainty']['entropy']:.2f}")
    return "\n\n".join(lines)


def _card_md(predictor: Predictor) -> str:
    from medattn.trust.card import format_card

    return format_card(predictor.card, markdown=True)


_CAM_CAPTION = ("Grad-CAM++: where the features that raised the score of the explained class lie "
                "(gradient-weighted class activation map; red = high, blue = low; not a segmentation).")
_ATT_CAPTION = ("Native attention: the model's own spatial-attention weights of its last attention "
                "block (what it emphasised, for every class alike; red = high).")


def dashboard_answer(predictor: Predictor, src: str | Path, alpha: float = 0.1) -> dict[str, Any]:
    """The dashboard's answer for one uploaded file: :meth:`Predictor.infer` on the file as uploaded
    (the same decoder, large-input rule, preparation and checks as every other door)."""
    return predictor.infer([src], alpha=float(alpha))[0]


def build_ui(predictor: Predictor, explainer: Explainer, samples: list[Path], limits: Limits) -> Any:
    """The dashboard's :class:`gradio.Blocks` for one predictor."""
    import gradio as gr
    import pandas as pd

    methods = explainer.methods
    names = predictor.class_names
    seg = predictor.task == "segmentation"
    arch = predictor.meta["architecture"]["name"]
    out_dir = Path(tempfile.mkdtemp(prefix="medattn_ui_"))

    def analyse(image_path: str | None, dicom: str | None, target: str, alpha: float = 0.1) -> tuple[Any, ...]:
        src = dicom or image_path
        if not src:
            raise gr.Error("Upload an image, a DICOM file, or pick a sample first.")
        try:
            img = predictor.decode(src)
            result = dashboard_answer(predictor, src, alpha)
            cam = explainer.render(img, "gradcam++", None if target == "top" else target)
            att = explainer.render(img, "attention") if "attention" in methods else None
            extra = explainer.render(img, "agcnn") if "agcnn" in methods else None
            segv = explainer.render(img, "segmentation") if seg else None
        except MedattnError as exc:
            raise gr.Error(str(exc)) from None
        probs = result.get("probabilities") or result.get("class_fractions", {})
        df = pd.DataFrame({"class": list(probs), "probability": [float(v) for v in probs.values()]})
        from medattn.infer.records import response_fields

        doc = {"model": {"id": f"{arch}-{str(predictor.meta['weights_sha256'])[:12]}",
                         "version": predictor.meta.get("medattn_version")},
               "file": Path(src).name, "task": predictor.task, **response_fields(result),
               "explanation": {"method": "gradcam++", "target": cam["target"]}}
        if extra is not None:
            doc["agcnn"] = {"box": extra["box"], "branches": extra["branches"]}
        path = atomic_write_json(out_dir / f"prediction_{time.strftime('%Y%m%d_%H%M%S')}_{id(doc) % 10000}.json", doc)
        label_value = {k: float(v) for k, v in probs.items()}
        from medattn.serve.views import with_colorbar

        return (_headline(result), _trust_md(result), label_value, df, with_colorbar(cam["overlay"]),
                with_colorbar(att["overlay"]) if att else None, extra["crop"] if extra else None,
                segv["overlay"] if segv else None, str(path))

    card = predictor.card
    with gr.Blocks(title=f"medattn · {arch}", analytics_enabled=False) as demo:
        gr.Markdown(f"## medattn · `{arch}`\n{predictor.task} model · classes: {', '.join(names)} · "
                    f"input {predictor.input_hw[0]}×{predictor.input_hw[1]} · **{card['research_use_only']}**",
                    elem_id="title")
        if card["training_data"].get("synthetic"):
            gr.Markdown("### ⚠ This model was trained on SYNTHETIC images. It has never seen real tissue or "
                        "patients: its answers on real images mean nothing.", elem_id="synthetic-banner")
        with gr.Accordion("Model card", open=False, elem_id="model-card"):
            gr.Markdown(_card_md(predictor), elem_id="model-card-text")
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.Image(type="filepath", format="png", label="Image", sources=["upload", "clipboard"],
                                 elem_id="input-image")
                dicom = gr.File(label="…or a DICOM file", file_types=[".dcm", ".dicom"], elem_id="input-dicom")
                target = gr.Dropdown(["top", *names], value="top", label="Explain class", elem_id="target")
                alpha = gr.Slider(0.01, 0.5, value=float((predictor.meta.get("conformal") or {}).get("default_alpha", 0.1)),
                                  step=0.01, label="Conformal alpha (1 − coverage of the prediction set)",
                                  elem_id="alpha", visible=not seg)
                run = gr.Button("Analyse", variant="primary", elem_id="analyse")
                if samples:
                    gr.Examples([[str(p)] for p in samples], inputs=[image], label="Sample images")
            with gr.Column(scale=2):
                headline = gr.Markdown(elem_id="headline")
                trust = gr.Markdown(elem_id="trust")
                label = gr.Label(label="Top prediction (probability)", num_top_classes=min(5, len(names)),
                                 elem_id="top-label")
                chart = gr.BarPlot(x="class", y="probability", y_lim=[0, 1], label="Probabilities", elem_id="chart",
                                   sort=None)
                with gr.Row():
                    with gr.Column():
                        cam = gr.Image(label="Grad-CAM++ (class activation map)", elem_id="overlay-cam",
                                       interactive=False)
                        gr.Markdown(_CAM_CAPTION, elem_id="caption-cam")
                    with gr.Column(visible="attention" in methods):
                        att = gr.Image(label="Native attention", elem_id="overlay-attention", interactive=False)
                        gr.Markdown(_ATT_CAPTION, elem_id="caption-attention")
                    crop = gr.Image(label="AG-CNN crop", elem_id="agcnn-crop", interactive=False,
                                    visible="agcnn" in methods)
                    segout = gr.Image(label="Segmentation", elem_id="overlay-seg", interactive=False, visible=seg)
                download = gr.File(label="Result (JSON)", elem_id="download-json", interactive=False)
        run.click(analyse, [image, dicom, target, alpha], [headline, trust, label, chart, cam, att, crop, segout,
                                                          download], concurrency_limit=2)
    return demo


def mount_ui(app: FastAPI, predictor: Predictor, explainer: Explainer, *, bundle_path: str | Path,
             api_key: str | None, limits: Limits) -> FastAPI:
    """Mount the dashboard at ``/``; with an API key, the dashboard asks for it as the password."""
    import gradio as gr

    from medattn.serve.samples import sample_images

    samples = sample_images(predictor.meta, bundle_path)
    blocks = build_ui(predictor, explainer, samples, limits)
    auth = None
    if api_key:
        def auth(_user: str, password: str) -> bool:
            return hmac.compare_digest(password.encode(), api_key.encode())

    allowed = sorted({str(p.parent) for p in samples})
    return gr.mount_gradio_app(app, blocks, path="/", auth=auth, allowed_paths=allowed,
                               max_file_size=limits.max_upload_bytes, footer_links=["api"])
