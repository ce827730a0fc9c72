"""Web dashboard (Gradio Blocks) mounted at ``/`` of the API app.

Upload an image (or a DICOM file) or pick a built-in sample; see the probabilities as a bar
chart, the top prediction with its confidence, Grad-CAM++ and native-attention overlays for a
chosen class, the AG-CNN crop (AG-CNN bundles), the segmentation overlay (U-Net bundles), and
download the result as JSON.
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
    return f"### Prediction: **{label}**, confidence {100 * probs[label]:.1f}%"


def build_ui(predictor: Predictor, explainer: Explainer, samples: list[Path], limits: Limits) -> Any:
    """The dashboard's :class:`gradio.Blocks` for one predictor."""
    import gradio as gr
    import pandas as pd

    methods = explainer.methods
    names = predictor.class_names
    seg = predictor.task == "segmentation"
    arch = predictor.meta["architecture"]["name"]
    out_dir = Path(tempfile.mkdtemp(prefix="medattn_ui_"))

    def analyse(image_path: str | None, dicom: str | None, target: str) -> tuple[Any, ...]:
        src = dicom or image_path
        if not src:
            raise gr.Error("Upload an image, a DICOM file, or pick a sample first.")
        try:
            img = predictor.to_pil(src)
            result = predictor.predict([img])[0]
            cam = explainer.render(img, "gradcam++", None if target == "top" else target)
            att = explainer.render(img, "attention") if "attention" in methods else None
            extra = explainer.render(img, "agcnn") if "agcnn" in methods else None
            segv = explainer.render(img, "segmentation") if seg else None
        except MedattnError as exc:
            raise gr.Error(str(exc)) from None
        probs = result.get("probabilities") or result.get("class_fractions", {})
        df = pd.DataFrame({"class": list(probs), "probability": [float(v) for v in probs.values()]})
        doc = {"model": {"id": f"{arch}-{str(predictor.meta['weights_sha256'])[:12]}",
                         "version": predictor.meta.get("medattn_version")},
               "file": Path(src).name, "task": predictor.task, **result,
               "explanation": {"method": "gradcam++", "target": cam["target"]}}
        if extra is not None:
            doc["agcnn"] = {"box": extra["box"], "branches": extra["branches"]}
        path = atomic_write_json(out_dir / f"prediction_{time.strftime('%Y%m%d_%H%M%S')}_{id(doc) % 10000}.json", doc)
        label_value = {k: float(v) for k, v in probs.items()}
        return (_headline(result), label_value, df, cam["overlay"],
                att["overlay"] if att else None, extra["crop"] if extra else None,
                segv["overlay"] if segv else None, str(path))

    with gr.Blocks(title=f"medattn · {arch}", analytics_enabled=False) as demo:
        gr.Markdown(f"## medattn · `{arch}`\n{predictor.task} model · classes: {', '.join(names)} · "
                    f"input {predictor.input_hw[0]}×{predictor.input_hw[1]}")
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.Image(type="filepath", format="png", label="Image", sources=["upload", "clipboard"],
                                 elem_id="input-image")
                dicom = gr.File(label="…or a DICOM file", file_types=[".dcm", ".dicom"], elem_id="input-dicom")
                target = gr.Dropdown(["top", *names], value="top", label="Explain class", elem_id="target")
                run = gr.Button("Analyse", variant="primary", elem_id="analyse")
                if samples:
                    gr.Examples([[str(p)] for p in samples], inputs=[image], label="Sample images")
            with gr.Column(scale=2):
                headline = gr.Markdown(elem_id="headline")
                label = gr.Label(label="Top prediction", num_top_classes=min(5, len(names)), elem_id="top-label")
                chart = gr.BarPlot(x="class", y="probability", y_lim=[0, 1], label="Probabilities", elem_id="chart",
                                   sort=None)
                with gr.Row():
                    cam = gr.Image(label="Grad-CAM++", elem_id="overlay-cam", interactive=False)
                    att = gr.Image(label="Native attention", elem_id="overlay-attention", interactive=False,
                                   visible="attention" in methods)
                    crop = gr.Image(label="AG-CNN crop", elem_id="agcnn-crop", interactive=False,
                                    visible="agcnn" in methods)
                    segout = gr.Image(label="Segmentation", elem_id="overlay-seg", interactive=False, visible=seg)
                download = gr.File(label="Result (JSON)", elem_id="download-json", interactive=False)
        run.click(analyse, [image, dicom, target], [headline, label, chart, cam, att, crop, segout, download],
                  concurrency_limit=2)
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
