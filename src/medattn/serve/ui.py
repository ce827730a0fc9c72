"""Web dashboard (Gradio Blocks) mounted at ``/`` of the API app.

Upload an image (or a DICOM file) or pick a sample of the bundle's own domain; see the decision
stated once, with its threshold and what chose it, the probabilities as a bar per class, the
conformal prediction set and every input warning (size, channels, intensity, out-of-distribution),
the tile heatmap of a tiled input, what the model sees (each deterministic preparation step with
PSNR, SSIM and RMS contrast against the input), Grad-CAM++ and native-attention overlays for a
chosen class (per class for multi-class bundles), the AG-CNN crop (AG-CNN bundles), the
segmentation overlay (U-Net bundles), the model card ("research use only"; a banner when the model
was trained on synthetic data), a link to the slide viewer when the server runs slide jobs, and
download the result as JSON. The answer is :func:`dashboard_answer` (= ``Predictor.infer``), as at every door.
"""

from __future__ import annotations

import hmac
import math
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

__all__ = ["build_ui", "mount_ui", "dashboard_answer", "decision_md"]


def _rule(method: str | None) -> str:
    """What chose a threshold, in the dashboard's short form (:func:`medattn.trust.card.threshold_rule`)."""
    from medattn.trust.card import threshold_rule

    return threshold_rule(method, short=True)


def _pair(p: float, t: float) -> tuple[str, str]:
    """``p`` and ``t`` with the fewest decimals (at least 2) that tell them apart."""
    for d in range(2, 7):
        if round(p, d) != round(t, d):
            break
    return f"{p:.{d}f}", f"{t:.{d}f}"


def _compare(p: float, t: float) -> str:
    a, b = _pair(p, t)
    return f"{a} {'≥' if p >= t else '<'} threshold {b}"


def decision_md(predictor: Predictor, result: dict[str, Any]) -> str:
    """The one decision of an answer, stated once: the label with the probability that decided it,
    the threshold and what chose it (binary, multi-label, a multi-class bundle's positive view)."""
    meta = predictor.meta
    rule = _rule(((meta.get("recipe") or {}).get("evaluation") or {}).get("threshold"))
    if "class_fractions" in result:
        fr = result["class_fractions"]
        fg = {k: v for k, v in list(fr.items())[1:]} or fr
        k = max(fg, key=fg.get)
        return f"### Segmentation: **{k}** covers {100 * fg[k]:.1f}% of the image"
    probs = result["probabilities"]
    tiled = result.get("handling") == "tiled"
    if "labels" in result:  # multi-label
        th = result["thresholds"]
        over = [f"**{n}** {_compare(probs[n], th[n])}" for n in result["labels"]]
        if over:
            head = "### Findings over their thresholds: " + "; ".join(over)
        else:
            top = max(probs, key=lambda n: probs[n] - th[n])
            head = f"### No finding over its threshold (closest: {top} {_compare(probs[top], th[top])})"
        where = f" Each finding's probability is that of its likeliest tile (of {result['tiles']})." if tiled else ""
        return f"{head}  \nThresholds {rule}.{where}"
    label = result["label"]
    if predictor.task == "binary":
        neg, pos = predictor.class_names
        where = f" (its likeliest of {result['tiles']} tiles)" if tiled else ""
        a, b = _pair(float(probs[pos]), float(result["threshold"]))
        said = "probability" if label == pos else f"probability of {pos}"
        return (f"### {label} — {said} {a}{where} {'≥' if label == pos else '<'} threshold {b} ({rule})")
    where = f", the mean over {result['tiles']} tiles" if tiled else ""
    out = (f"### {label} — the likeliest of {len(probs)} classes, probability {probs[label]:.2f}{where} "
           "(no threshold: the highest probability decides)")
    view = meta.get("positive_view")
    if view and view["name"] in result:
        v = result[view["name"]]
        out += (f"  \n**{view['name']}** ({', '.join(view['classes'])}): **{'yes' if v['positive'] else 'no'}** — "
                f"their summed probability {_compare(v['probability'], v['threshold'])} "
                f"({_rule(view.get('threshold_method'))})")
        for op, rec in (view.get("operating_points") or {}).items():  # e.g. the screening point
            if f"{op}_positive" in v:
                target = rec.get("target_sensitivity")
                why = (f"the highest threshold reaching sensitivity ≥ {target:.2f} on validation"
                       if target is not None else "chosen on validation")
                out += (f"  \n{op} point: **{'yes' if v[f'{op}_positive'] else 'no'}** — "
                        f"{_compare(v['probability'], v[f'{op}_threshold'])} ({why})")
    return out


def _trust_md(result: dict[str, Any]) -> str:
    """The conformal set, the input warnings and the tile summary, shown above the probability bars."""
    lines = []
    if result.get("handling") == "tiled":
        lines.append(f"**Tiled**: the {result['width']}×{result['height']} px image was seen as {result['tiles']} "
                     f"tiles at its own scale (never shrunk); the image is positive when any tile is (highest tile "
                     f"{result['tile_max']:.2f}, mean {result['tile_mean']:.2f}; the heatmap below shows each tile).")
        if "tile_sets" in result:
            sets = ", ".join(f"{{{k.replace('|', ', ')}}} {100 * v:.0f}%" for k, v in result["tile_sets"].items())
            lines.append(f"**Prediction sets of the tiles** ({100 * (1 - result['alpha']):.0f}% conformal): {sets}")
        if "tile_ood_share" in result:
            lines.append(f"Tiles out of distribution: {100 * result['tile_ood_share']:.0f}%")
    if "prediction_set" in result:
        s = result["prediction_set"]
        shown = ", ".join(s) if isinstance(s, list) else "; ".join(f"{k}: {'/'.join(v) or '—'}" for k, v in s.items())
        cover = f"{100 * (1 - result['alpha']):.0f}%"
        wide = isinstance(s, list) and len(s) > 1
        lines.append(f"**Prediction set** ({cover} conformal): {{{shown}}} — the classes that hold the true one "
                     f"{cover} of the time on images like the validation ones"
                     + ("; more than one class: the model is uncertain here, refer" if wide else ""))
    cal = result.get("calibrated_probabilities")
    if cal:
        lines.append("Calibrated probabilities (temperature fitted on validation; the decision uses the "
                     "probabilities above): " + ", ".join(f"{k} {v:.2f}" for k, v in cal.items()))
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


def _bars(predictor: Predictor, result: dict[str, Any]) -> Any:
    """The probability bars of an answer: a bar per class, the decided class(es) marked, thresholds drawn."""
    from medattn.serve.views import probability_bars

    if "class_fractions" in result:
        return probability_bars(result["class_fractions"], [], None, "Share of the image per class")
    probs = result["probabilities"]
    tiled = result.get("handling") == "tiled"
    if "labels" in result:
        return probability_bars(probs, result["labels"], result["thresholds"],
                                "Probability of each finding" + (" (its likeliest tile)" if tiled else ""))
    if predictor.task == "binary":
        pos = predictor.class_names[1]
        return probability_bars(probs, [result["label"]], {pos: float(result["threshold"])},
                                "Probability of each class" + (" (the likeliest tile)" if tiled else ""))
    return probability_bars(probs, [result["label"]], None,
                            "Probability of each class" + (" (mean over tiles)" if tiled else ""))


def _tiles(predictor: Predictor, image: Any, result: dict[str, Any]) -> Any:
    """The tile heatmap of a tiled answer (``None`` otherwise)."""
    import numpy as np

    from medattn.serve.views import tile_heatmap

    if result.get("handling") != "tiled" or result.get("tile_scores") is None:
        return None
    names = predictor.class_names
    if predictor.task == "binary":
        label, thr = f"P({names[1]}) of each tile", float(result["threshold"])
    elif predictor.task == "multiclass":
        label, thr = f"1 − P({names[0]}) of each tile", None
    else:
        label, thr = "highest finding probability of each tile", None
    return tile_heatmap(image, np.asarray(result["tile_scores"], np.float32), predictor.input_hw[0], label, thr)


def _number(v: float, fmt: str) -> str:
    return "∞" if math.isinf(v) else ("—" if math.isnan(v) else format(v, fmt))


def _prep_md(steps: list[dict[str, Any]], result: dict[str, Any], tile: Any = None) -> str:
    """The preparation panel's table and caption (``tile``: row and column of the tile shown)."""
    rows = ["| step | size (px) | PSNR vs input (dB) | SSIM vs input | RMS contrast |", "|---|---|---|---|---|"]
    rows += [f"| {s['name']} | {s['width']}×{s['height']} | {_number(s['psnr'], '.1f')} | {_number(s['ssim'], '.3f')} "
             f"| {s['rms_contrast']:.3f} |" for s in steps]
    r, c = tile or (0, 0)
    how = {"tiled": f"This image is tiled at its own scale: shown is its likeliest tile (row {r + 1}, column {c + 1} "
                    f"of the heatmap); each of its {result.get('tiles')} tiles goes through these steps on its own, "
                    "without a resize. ",
           "segmented": "Segmentation sees the image at its own size (overlapping tiles), without a resize. "}
    return ("\n".join(rows) + "\n\n" + how.get(str(result.get("handling")), "")
            + "Each deterministic step of this bundle's preparation, in order; then the pixels are scaled to "
            "[0, 1] and normalised by the bundle's mean and std. PSNR and SSIM (scikit-image) compare each step "
            "with the input **at the input's size**: a resized step is resized back (bilinear) for the numbers, "
            "so they include what the resize loses (∞ dB and SSIM 1 = unchanged). RMS contrast: the standard "
            "deviation of the step's grey levels (0–1).")


def _card_md(predictor: Predictor) -> str:
    from medattn.trust.card import format_card

    return format_card(predictor.card, markdown=True)


_CAM_CAPTION = ("Grad-CAM++: where the features that raised the score of the explained class lie "
                "(gradient-weighted class activation map; red = high, blue = low; not a segmentation).")
_TILED_CAM = (" This image was tiled: each tile has its own map, scaled to its own range, so the pattern repeats "
              "tile by tile; the tile heatmap above compares the tiles.")
_ATT_CAPTION = ("Native attention: the model's own spatial-attention weights of its last attention "
                "block (what it emphasised, for every class alike; red = high).")


def dashboard_answer(predictor: Predictor, src: str | Path, alpha: float = 0.1) -> dict[str, Any]:
    """The dashboard's answer for one uploaded file: :meth:`Predictor.infer` on the file as uploaded
    (the same decoder, large-input rule, preparation and checks as every other door)."""
    return predictor.infer([src], alpha=float(alpha))[0]


_CLASSES_CAPTION = ("Grad-CAM++ of each class: where the features that raise that class's score lie. Each map "
                    "is scaled to its own range (red = its highest): compare where, not how strongly.")


def build_ui(predictor: Predictor, explainer: Explainer, samples: list[Path], limits: Limits, *,
             slide_viewer: bool = False) -> Any:
    """The dashboard's :class:`gradio.Blocks` for one predictor.

    Args:
        predictor: the served predictor.
        explainer: its explanations (a private copy of the model).
        samples: sample images offered under the upload (may be empty).
        limits: upload limits.
        slide_viewer: the server runs slide jobs: link to the slide viewer.
    """
    import gradio as gr

    from medattn.serve.views import preparation_steps, with_colorbar

    methods = explainer.methods
    names = predictor.class_names
    seg = predictor.task == "segmentation"
    per_class = predictor.task == "multiclass"
    arch = predictor.meta["architecture"]["name"]
    out_dir = Path(tempfile.mkdtemp(prefix="medattn_ui_"))

    def analyse(image_path: str | None, dicom: str | None, target: str, alpha: float = 0.1) -> tuple[Any, ...]:
        src = dicom or image_path
        if not src:
            raise gr.Error("Upload an image, a DICOM file, or pick a sample first.")
        try:
            img = predictor.decode(src)
            result = dashboard_answer(predictor, src, alpha)
            seen, where = img, None
            if result.get("handling") == "tiled":  # the model sees tiles: show the likeliest one's steps
                from medattn.serve.views import likeliest_tile

                seen, *where = likeliest_tile(img, result["tile_scores"], predictor.input_hw[0])
            steps = preparation_steps(predictor, seen, resize=result.get("handling") not in ("tiled", "segmented"))
            if where:
                steps[0]["name"] = "likeliest tile"
            cam = explainer.render(img, "gradcam++", None if target == "top" else target)
            classes = explainer.render_classes(img, "gradcam++") if per_class else []
            att = explainer.render(img, "attention") if "attention" in methods else None
            extra = explainer.render(img, "agcnn") if "agcnn" in methods else None
            segv = explainer.render(img, "segmentation") if seg else None
        except MedattnError as exc:
            raise gr.Error(str(exc)) from None
        from medattn.infer.records import response_fields

        doc = {"model": {"id": f"{arch}-{str(predictor.meta['weights_sha256'])[:12]}",
                         "version": predictor.meta.get("medattn_version")},
               "file": Path(src).name, "task": predictor.task, **response_fields(result),
               "explanation": {"method": "gradcam++", "target": cam["target"]}}
        if extra is not None:
            doc["agcnn"] = {"box": extra["box"], "branches": extra["branches"]}
        path = atomic_write_json(out_dir / f"prediction_{time.strftime('%Y%m%d_%H%M%S')}_{id(doc) % 10000}.json", doc)
        tiles = _tiles(predictor, img, result)
        prep = [(s["display"], f"{s['name']}: {s['width']}×{s['height']} px" if i == 0 else
                 f"{s['name']}: {_number(s['psnr'], '.1f')} dB, SSIM {_number(s['ssim'], '.2f')}")
                for i, s in enumerate(steps)]  # short captions; the table below has every number
        return (decision_md(predictor, result), _trust_md(result), _bars(predictor, result),
                gr.update(value=tiles, visible=tiles is not None), prep, _prep_md(steps, result, where),
                with_colorbar(cam["overlay"]), _CAM_CAPTION + (_TILED_CAM if tiles is not None else ""),
                [(c["overlay"], f"{c['target']} · p = {c['probability']:.2f}")
                                                for c in classes],
                with_colorbar(att["overlay"]) if att else None, extra["crop"] if extra else None,
                segv["overlay"] if segv else None, str(path))

    card = predictor.card
    with gr.Blocks(title=f"medattn · {arch}", analytics_enabled=False) as demo:
        gr.Markdown(f"## medattn · `{arch}`\n{predictor.task} model · classes: {', '.join(names)} · "
                    f"input {predictor.input_hw[0]}×{predictor.input_hw[1]} · **{card['research_use_only']}**",
                    elem_id="title")
        if slide_viewer:
            gr.Markdown("[Slide viewer](/slides/viewer): whole-slide jobs of this server", elem_id="slide-viewer-link")
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
                else:
                    gr.Markdown("No sample images: this model was trained on real data and none came with it "
                                "(`medattn serve --samples DIR` offers a folder of your own).", elem_id="no-samples")
            with gr.Column(scale=2):
                headline = gr.Markdown(elem_id="decision")
                trust = gr.Markdown(elem_id="trust")
                chart = gr.Image(label="Probabilities", elem_id="chart", interactive=False, show_label=False)
                tilemap = gr.Image(label="Tile heatmap", elem_id="tile-heatmap", interactive=False, visible=False)
        with gr.Accordion("What the model sees: preparation steps", open=True, elem_id="preparation"):
            prep_gallery = gr.Gallery(label="Preparation steps", elem_id="prep-steps", columns=4, object_fit="contain",
                                      allow_preview=False, show_label=False, interactive=False, fit_columns=False,
                                      height="fit-content")
            prep_md = gr.Markdown(elem_id="prep-metrics")
        with gr.Row():
            with gr.Column():
                cam = gr.Image(label="Grad-CAM++ (class activation map)", elem_id="overlay-cam", interactive=False)
                cam_caption = gr.Markdown(_CAM_CAPTION, elem_id="caption-cam")
            with gr.Column(visible="attention" in methods):
                att = gr.Image(label="Native attention", elem_id="overlay-attention", interactive=False)
                gr.Markdown(_ATT_CAPTION, elem_id="caption-attention")
            crop = gr.Image(label="AG-CNN crop", elem_id="agcnn-crop", interactive=False, visible="agcnn" in methods)
            segout = gr.Image(label="Segmentation", elem_id="overlay-seg", interactive=False, visible=seg)
        with gr.Column(visible=per_class):
            cams = gr.Gallery(label="Grad-CAM++ per class", elem_id="cam-gallery", columns=4, object_fit="contain",
                              allow_preview=False, interactive=False, height="fit-content")
            gr.Markdown(_CLASSES_CAPTION, elem_id="caption-cam-gallery")
        download = gr.File(label="Result (JSON)", elem_id="download-json", interactive=False)
        run.click(analyse, [image, dicom, target, alpha],
                  [headline, trust, chart, tilemap, prep_gallery, prep_md, cam, cam_caption, cams, att, crop, segout, download],
                  concurrency_limit=2)
    return demo


def mount_ui(app: FastAPI, predictor: Predictor, explainer: Explainer, *, bundle_path: str | Path,
             api_key: str | None, limits: Limits, samples: str | Path | None = None) -> FastAPI:
    """Mount the dashboard at ``/``; with an API key, the dashboard asks for it as the password.

    Args:
        samples: a folder of sample images (``medattn serve --samples``); default: the bundle's own
            ``samples/``, synthetic images for a bundle trained on synthetic data, else none.
    """
    import gradio as gr

    from medattn.serve.samples import sample_images

    shown = sample_images(predictor.meta, bundle_path, folder=samples)
    blocks = build_ui(predictor, explainer, shown, limits,
                      slide_viewer=getattr(app.state, "slide_jobs", None) is not None)
    auth = None
    if api_key:
        def auth(_user: str, password: str) -> bool:
            return hmac.compare_digest(password.encode(), api_key.encode())

    allowed = sorted({str(p.parent) for p in shown})
    return gr.mount_gradio_app(app, blocks, path="/", auth=auth, allowed_paths=allowed,
                               max_file_size=limits.max_upload_bytes, footer_links=["api"])
