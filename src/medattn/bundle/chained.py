"""A chained segment-then-classify pair saved as one bundle folder, served like any bundle.

Layout::

    chain/
      pipeline.json        kind, emphasis settings, sha256 of both sub-bundles' weights
      segmenter/           an ordinary bundle (bundle.json + model.safetensors)
      classifier/          an ordinary bundle

:func:`medattn.bundle.load_bundle` recognises the folder by its ``pipeline.json`` and returns a
:class:`ChainedPredictor`, so ``medattn serve chain/`` gives the REST API and the dashboard of the
whole chain. The sub-bundle folder names are fixed (``pipeline.json`` cannot point elsewhere),
each sub-bundle's checksum is verified as usual, and ``pipeline.json`` must name the same weights,
so a swapped sub-bundle is refused. The chain's model is :class:`medattn.models.chain.ChainedModel`;
:class:`medattn.pipelines.SegmentClassifyPipeline` (CAMs, reports) is built on :func:`chain_predictor`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medattn import __version__
from medattn.bundle.format import bundle_json_text, read_bundle_files, write_bundle_json
from medattn.bundle.predictor import Predictor, load_single_bundle
from medattn.errors import BundleError, ConfigError
from medattn.io import atomic_dir, atomic_write_text

__all__ = ["ChainedPredictor", "chain_predictor", "chained_meta", "save_chained_bundle", "load_chained_bundle",
           "read_chained_bundle", "is_chained_bundle", "chain_settings", "settings_of", "PIPELINE_FILE", "PIPELINE_FORMAT"]

PIPELINE_FILE = "pipeline.json"
PIPELINE_FORMAT = 1
_PARTS = ("segmenter", "classifier")
_KEEP = ("architecture", "task", "class_names", "input_size", "in_chans", "mean", "std", "threshold",
         "thresholds", "metrics", "weights_sha256", "medattn_version")


def is_chained_bundle(path: str | Path) -> bool:
    """True when ``path`` is a folder holding a ``pipeline.json``."""
    p = Path(path)
    return p.is_dir() and (p / PIPELINE_FILE).is_file()


def chained_meta(seg_meta: dict[str, Any], cls_meta: dict[str, Any], settings: dict[str, Any],
                 evaluation: dict[str, Any] | None = None) -> dict[str, Any]:
    """Bundle-style metadata of the whole chain (what ``GET /v1/model`` shows)."""
    digest = hashlib.sha256(f"{seg_meta['weights_sha256']}:{cls_meta['weights_sha256']}".encode()).hexdigest()
    s = int(settings["work_size"])
    meta: dict[str, Any] = {
        "format": PIPELINE_FORMAT, "kind": "segment_classify", "medattn_version": __version__,
        "architecture": {"name": "segment_classify",
                         "kwargs": {"segmenter": seg_meta["architecture"]["name"],
                                    "classifier": cls_meta["architecture"]["name"], **settings}},
        "task": cls_meta.get("task", "binary"), "class_names": list(cls_meta["class_names"]),
        "input_size": s, "in_chans": 3, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0],
        "pipeline": dict(settings), "weights_sha256": digest,
        "segmenter": {k: seg_meta[k] for k in _KEEP if k in seg_meta},
        "classifier": {k: cls_meta[k] for k in _KEEP if k in cls_meta},
    }
    for k in ("threshold", "thresholds"):
        if k in cls_meta:
            meta[k] = cls_meta[k]
    if evaluation:
        meta["evaluation"] = evaluation
    return meta


class ChainedPredictor(Predictor):
    """A :class:`Predictor` of a segment → emphasise → classify chain.

    Its model (:class:`~medattn.models.chain.ChainedModel`) takes ``[0, 1]`` images at the working
    size (``meta["input_size"]``) and returns the classifier's logits. :meth:`predict_tensor`
    appends five columns to the class probabilities: the region's share of the image and its box
    ``(x0, y0, x1, y1)`` as fractions of the image size; :meth:`format_probs` turns them into
    ``region_fraction`` and ``region_box``. ``segmenter`` and ``classifier`` are the two parts.
    """

    segmenter: Predictor | None = None
    classifier: Predictor | None = None

    def _n_out(self) -> int:
        return 1 if self.task == "binary" else len(self.class_names)

    def postprocess_logits(self, logits: torch.Tensor) -> np.ndarray:
        """Classifier probabilities from logits (``B`` for binary, else ``B×K``)."""
        from medattn.models.outputs import probabilities

        p = probabilities(logits, self.task).detach().cpu().numpy()
        return p[:, 0] if self.task == "binary" else p

    @torch.no_grad()
    def predict_tensor(self, x: torch.Tensor, details: dict[str, Any] | None = None) -> np.ndarray:
        """``B × (outputs + 5)``: probabilities, region fraction and region box (fractions).
        ``details`` stays empty: a chain carries no OOD model or TTA views of its own, so its trust
        checks (the contract, the sets) need nothing from the forward pass."""
        res = self.model.run_chain(x.to(self.device))
        p = self.postprocess_logits(res.logits).reshape(len(x), -1)
        s = float(x.shape[-1])
        extra = torch.cat([res.mask.flatten(1).float().mean(1, keepdim=True).cpu(), res.boxes.float().cpu() / s], 1)
        return np.concatenate([p, extra.numpy()], 1)

    def format_probs(self, p: np.ndarray) -> dict[str, Any]:
        """The classifier's result plus ``region_fraction`` and ``region_box``."""
        row = np.asarray(p, dtype=np.float64).reshape(-1)
        n = self._n_out()
        if len(row) == n:  # plain probabilities (no region columns)
            return super().format_probs(row[0] if self.task == "binary" else row)
        out = super().format_probs(row[0] if self.task == "binary" else row[:n])
        out["region_fraction"] = float(row[n])
        out["region_box"] = [float(v) for v in row[n + 1 : n + 5]]
        out["emphasis"] = self.meta["pipeline"]["mode"]
        return out


def _part(p: Predictor | str | Path, want: str, role: str) -> Predictor:
    """A loaded part of the chain, refused when its task does not fit its role."""
    pred = load_single_bundle(p) if isinstance(p, (str, Path)) else p
    is_seg = pred.task == "segmentation"
    if (want == "segmentation") != is_seg:
        raise BundleError(f"--{role} '{getattr(pred, 'source', p)}' is a {pred.task} bundle; "
                          f"pass a {'segmentation (U-Net)' if want == 'segmentation' else 'classification'} bundle")
    return pred


def chain_settings(seg_meta: dict[str, Any], cls_meta: dict[str, Any], *, mode: str = "mask", dim: float = 0.3,
                   fill: float = 0.0, margin: float = 0.05) -> dict[str, Any]:
    """Checked emphasis settings with the working size (what ``pipeline.json`` records).

    Raises:
        ConfigError: an unknown mode, or ``dim``/``fill``/``margin`` outside [0, 1].
    """
    from medattn.models.chain import working_size
    from medattn.models.emphasis import check_mode

    check_mode(mode, dim, margin)
    if not 0.0 <= fill <= 1.0:
        raise ConfigError(f"--fill must lie in [0, 1], got {fill}")
    return {"mode": mode, "dim": dim, "fill": fill, "margin": margin,
            "work_size": working_size(seg_meta, cls_meta, mode)}


def chain_predictor(segmenter: Predictor | str | Path, classifier: Predictor | str | Path, *, mode: str = "mask",
                    dim: float = 0.3, fill: float = 0.0, margin: float = 0.05,
                    device: str | torch.device | None = None) -> ChainedPredictor:
    """The :class:`ChainedPredictor` of a segmenter and a classifier (bundle paths or predictors).

    Args:
        segmenter: segmentation bundle.
        classifier: binary / multiclass / multilabel bundle.
        mode: ``mask`` (background → ``fill``), ``dim`` (background faded) or ``crop`` (box of the
            largest region).
        dim: ``dim`` mode: share of the background's contrast kept.
        fill: background value in [0, 1] for ``mask``/``dim``.
        margin: ``crop`` mode: fraction of the box added on every side.
        device: torch device (default: the classifier's).

    Raises:
        BundleError: a part whose task does not fit its role. ConfigError: bad settings.
    """
    from medattn.models.chain import ChainedModel

    seg = _part(segmenter, "segmentation", "segmenter")
    cls = _part(classifier, "classification", "classifier")
    settings = chain_settings(seg.meta, cls.meta, mode=mode, dim=dim, fill=fill, margin=margin)
    dev = torch.device(device) if device else cls.device
    model = ChainedModel(seg.model, cls.model, seg.meta, cls.meta, mode=mode, dim=dim, fill=fill,
                         margin=margin).to(dev)
    pred = ChainedPredictor(model=model, meta=chained_meta(seg.meta, cls.meta, settings), device=dev,
                            source=f"{seg.source} + {cls.source}", max_pixels=cls.max_pixels)
    pred.segmenter, pred.classifier = seg, cls
    return pred


def _part_files(src: Predictor | str | Path) -> tuple[dict[str, Any], bytes]:
    if isinstance(src, (str, Path)):
        if is_chained_bundle(src):
            raise BundleError(f"'{src}' is already a chained bundle; pass the segmenter and classifier bundles")
        return read_bundle_files(src)
    if src.source and Path(src.source).exists() and not is_chained_bundle(src.source):
        return read_bundle_files(src.source)
    from safetensors.torch import save

    weights = save({k: v.detach().cpu().contiguous() for k, v in src.model.state_dict().items()})
    return {**src.meta, "weights_sha256": hashlib.sha256(weights).hexdigest()}, weights


def save_chained_bundle(segmenter: Predictor | str | Path, classifier: Predictor | str | Path, path: str | Path, *,
                        mode: str = "mask", dim: float = 0.3, fill: float = 0.0, margin: float = 0.05,
                        evaluation: dict[str, Any] | None = None) -> Path:
    """Write ``segmenter`` and ``classifier`` bundles and the emphasis settings as one folder.

    Args:
        segmenter, classifier: bundle folders/zips or loaded predictors.
        path: the chained bundle folder (replaced atomically).
        mode, dim, fill, margin: emphasis settings (see :func:`chain_predictor`).
        evaluation: optional summary of :func:`~medattn.pipelines.chain_eval.evaluate_chain`.
    """
    seg = _part(segmenter, "segmentation", "segmenter")
    cls = _part(classifier, "classification", "classifier")
    parts = {"segmenter": _part_files(seg), "classifier": _part_files(cls)}
    settings = chain_settings(seg.meta, cls.meta, mode=mode, dim=dim, fill=fill, margin=margin)
    doc = {"format": PIPELINE_FORMAT, "kind": "segment_classify", "medattn_version": __version__, **settings,
           **{name: {"folder": name, "weights_sha256": meta["weights_sha256"]} for name, (meta, _) in parts.items()}}
    if evaluation:
        doc["evaluation"] = evaluation
    target = Path(path)
    with atomic_dir(target) as tmp:
        for name, (meta, weights) in parts.items():
            (tmp / name).mkdir()
            (tmp / name / "model.safetensors").write_bytes(weights)
            write_bundle_json(tmp / name, meta)
        atomic_write_text(tmp / PIPELINE_FILE, bundle_json_text(doc))
    return target


def _read_pipeline(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads((path / PIPELINE_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"'{path / PIPELINE_FILE}' is not readable JSON ({exc}); re-save the chained bundle") from None
    if not isinstance(doc, dict) or doc.get("kind") != "segment_classify":
        raise BundleError(f"'{path / PIPELINE_FILE}': kind must be 'segment_classify'")
    if doc.get("format") != PIPELINE_FORMAT:
        raise BundleError(f"'{path / PIPELINE_FILE}': format {doc.get('format')!r} is not {PIPELINE_FORMAT}; "
                          "re-save it with this medattn version")
    for name in _PARTS:
        if not isinstance(doc.get(name), dict) or "weights_sha256" not in doc[name]:
            raise BundleError(f"'{path / PIPELINE_FILE}' lacks the {name}'s weights_sha256")
    return doc


def read_chained_bundle(path: str | Path, device: str | torch.device | None = None, *,
                        max_pixels: int | None = None) -> tuple[dict[str, Any], Predictor, Predictor]:
    """``(pipeline.json, segmenter, classifier)`` of a chained bundle, each part verified against
    the weights ``pipeline.json`` records.

    Raises:
        BundleError: not a chained bundle, a malformed ``pipeline.json``, or a swapped part.
    """
    p = Path(path)
    if not is_chained_bundle(p):
        raise BundleError(f"'{p}' is not a chained bundle (no {PIPELINE_FILE}); save one with "
                          "`medattn pipeline save-chain` or save_chained_bundle()")
    doc = _read_pipeline(p)
    kw = {} if max_pixels is None else {"max_pixels": max_pixels}
    preds = {}
    for name in _PARTS:
        pred = load_single_bundle(p / name, device=device, **kw)
        if pred.meta["weights_sha256"] != doc[name]["weights_sha256"]:
            raise BundleError(f"'{p / name}' is not the {name} recorded in {PIPELINE_FILE} (weights differ); "
                              "the chained bundle was modified: re-save it")
        preds[name] = pred
    return doc, preds["segmenter"], preds["classifier"]


def settings_of(doc: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The emphasis settings recorded in ``pipeline.json`` (``mode``, ``dim``, ``fill``, ``margin``).

    Raises:
        BundleError: a malformed setting.
    """
    try:
        return {"mode": str(doc.get("mode", "mask")), "dim": float(doc.get("dim", 0.3)),
                "fill": float(doc.get("fill", 0.0)), "margin": float(doc.get("margin", 0.05))}
    except (TypeError, ValueError) as exc:
        raise BundleError(f"'{Path(path) / PIPELINE_FILE}' has a malformed emphasis setting ({exc})") from None


def load_chained_bundle(path: str | Path, device: str | torch.device | None = None, *,
                        max_pixels: int | None = None) -> ChainedPredictor:
    """The :class:`ChainedPredictor` of a chained bundle (what ``load_bundle`` returns for one)."""
    doc, seg, cls = read_chained_bundle(path, device, max_pixels=max_pixels)
    pred = chain_predictor(seg, cls, **settings_of(doc, path), device=device)
    if doc.get("evaluation"):
        pred.meta["evaluation"] = doc["evaluation"]
    pred.source = str(path)
    return pred
