"""The predictor of a bundle: :class:`Predictor`, whose :meth:`Predictor.infer` is the one inference
entry of every door (predict, evaluate, explain, slide, REST, dashboard), and
:func:`load_single_bundle` (one model's bundle)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medattn.bundle.format import build_model, read_bundle_files
from medattn.decode import (  # re-exported: the bundle API reads images too
    DEFAULT_MAX_PIXELS,
    read_image,
)
from medattn.errors import BundleError, DataError

__all__ = ["load_single_bundle", "Predictor", "Prepared", "main_output", "slice_details", "join_details"]


def load_single_bundle(path: str | Path, device: str | torch.device | None = None, *,
                       max_pixels: int = DEFAULT_MAX_PIXELS) -> Predictor:
    """Load one model's bundle (folder or ``.zip``) into a :class:`Predictor` (no unpickling,
    checksum verified); :func:`medattn.bundle.load_bundle` also reads chained bundles.

    Raises:
        BundleError: missing, malformed or tampered bundle, or weights that do not fit.
    """
    meta, weights = read_bundle_files(path)
    model = build_model(meta, weights, str(path))
    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return Predictor(model=model.to(dev), meta=meta, device=dev, source=str(path), max_pixels=max_pixels)


def main_output(out: Any) -> torch.Tensor:
    """The logits of a model whose forward returns a tensor, a dict (AG-CNN) or a tuple."""
    from medattn.models.outputs import main_logits

    return main_logits(out)


def slice_details(details: dict[str, Any] | None, start: int, stop: int) -> dict[str, Any] | None:
    """Rows ``start:stop`` of the ``details`` of :meth:`Predictor.predict_tensor`."""
    if details is None:
        return None
    out: dict[str, Any] = {}
    if "features" in details:
        out["features"] = {k: v[start:stop] for k, v in details["features"].items()}
    if "views" in details:
        out["views"] = details["views"][:, start:stop]
    return out


def join_details(parts: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
    """The ``details`` of consecutive batches as one (rows in order); empty when any lacks a key."""
    parts = [p or {} for p in parts]
    out: dict[str, Any] = {}
    if parts and all("features" in p for p in parts):
        keys = set.intersection(*(set(p["features"]) for p in parts))
        out["features"] = {k: np.concatenate([p["features"][k] for p in parts]) for k in keys}
    if parts and all("views" in p for p in parts):
        out["views"] = np.concatenate([p["views"] for p in parts], axis=1)
    return out


@dataclass
class Prepared:
    """One input ready for the model: the decoded image and what the model will see.

    Attributes:
        image: the decoded ``uint8`` image at its own size.
        x: ``1×C×H×W`` (one view of the whole image, resized to the model input or, for
            segmentation, at its own size) or ``N×C×h×w`` (tiles at the image's own scale).
        handling: ``as-is``, ``resized``, ``tiled`` (classifier over tiles) or ``segmented``.
        boxes: tile origins ``(y0, x0)`` for ``tiled`` inputs.
        mpp: µm per image pixel the input declares (file header) or the user gives (``--mpp``), or None.
        mpp_source: where ``mpp`` came from.
    """

    image: np.ndarray
    x: torch.Tensor
    handling: str
    boxes: list[tuple[int, int]] | None = None
    mpp: float | None = None
    mpp_source: str | None = None

    def scale(self) -> dict[str, Any]:
        """What the scale check needs: ``mpp``, ``mpp_source`` and ``zoom`` (model pixels per image
        pixel: 1 for tiles and segmentation fields, model side / image side for resized inputs)."""
        zoom = 1.0
        if self.handling in ("as-is", "resized"):
            h, w = self.image.shape[:2]
            zoom = float(np.sqrt(self.x.shape[-2] * self.x.shape[-1] / max(h * w, 1)))
        return {"mpp": self.mpp, "mpp_source": self.mpp_source, "zoom": zoom}


@dataclass
class Predictor:
    """A model with its preparation; :meth:`infer` is the one inference entry of every door.

    Inputs may be PIL images, numpy arrays, raw bytes, pydicom datasets, or paths of
    PNG/JPEG/BMP/TIFF/GIF/WebP/DICOM files; they are decoded by :func:`medattn.decode.read_image`,
    which refuses files over ``max_pixels`` before reading their pixels.
    """

    model: nn.Module
    meta: dict[str, Any]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    source: str = ""
    max_pixels: int = DEFAULT_MAX_PIXELS

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    @property
    def task(self) -> str:
        return str(self.meta.get("task", "binary"))

    @property
    def seg_target(self) -> str:
        """Segmentation head kind (``binary``, ``three_class``, ``hover``) from the stored recipe."""
        from medattn.models.outputs import seg_target_of

        return seg_target_of(self.meta)

    @property
    def threshold(self) -> float:
        return float(self.meta.get("threshold", 0.5))

    @property
    def input_hw(self) -> tuple[int, int]:
        """``(height, width)`` the model takes (``input_size`` may be an int or a pair)."""
        s = self.meta["input_size"]
        return (int(s), int(s)) if isinstance(s, (int, float)) else (int(s[0]), int(s[1]))

    @property
    def preparation(self) -> Any:
        """The bundle's :class:`~medattn.data.transforms.Preparation` (built once)."""
        prep = self.__dict__.get("_prep")
        if prep is None:
            from medattn.data.transforms import Preparation

            prep = self.__dict__["_prep"] = Preparation.from_meta(self.meta)
        return prep

    def decode(self, item: Any, name: str | None = None, info: dict[str, Any] | None = None) -> np.ndarray:
        """Any accepted input → ``uint8`` image (``H×W×3``, or ``H×W`` for one-channel bundles) by the
        one decoder (:func:`medattn.decode.read_image`); ``info`` receives the declared resolution."""
        return read_image(item, "L" if int(self.meta.get("in_chans", 3)) == 1 else "RGB",
                          max_pixels=self.max_pixels, name=name, info=info)

    def preprocess(self, items: Sequence[Any]) -> torch.Tensor:
        """``B×C×H×W`` of whole images resized to the model input by the bundle's preparation (for
        explanations of patch-size images; doors use :meth:`infer`, which tiles large images)."""
        return self.preparation.batch([self.decode(it) for it in items])

    # -- the large-input rule -----------------------------------------------------------------

    def large_input_rule(self) -> tuple[str, float]:
        """``(policy, factor)``: classification inputs with a side over ``factor`` × the training size
        are tiled at their own scale (``"tile"``) or refused (``"refuse"``). Default ``("tile", 2.0)``."""
        rule = self.meta.get("large_input") or {}
        policy, factor = str(rule.get("policy", "tile")), float(rule.get("factor", 2.0))
        if policy not in ("tile", "refuse") or factor < 1:
            raise BundleError(f"bundle.json field 'large_input' {rule!r} is malformed; policy is 'tile' or "
                              "'refuse', factor >= 1")
        return policy, factor

    def seg_tiling(self) -> tuple[int, int]:
        """``(window, overlap)`` of a segmentation bundle: its evaluation tiling (else the input size)."""
        from medattn.infer.tiling import effective_overlap

        ev = ((self.meta.get("recipe") or {}).get("evaluation") or {})
        window = int(ev.get("tile_size") or self.input_hw[0])
        return window, effective_overlap(window, int(ev.get("tile_overlap", 64)))

    def prepare_input(self, image: np.ndarray, *, tile: bool | None = None, name: str = "image",
                      mpp: float | None = None, mpp_source: str | None = None) -> Prepared:
        """Decide how the model sees ``image`` and prepare it (the bundle's preparation).

        Args:
            image: a decoded image (:meth:`decode`).
            tile: ``None`` applies the bundle's large-input rule; ``True`` tiles any input larger than
                the model input; ``False`` resizes every input to the model input.
            name: how a refusal names the input.
            mpp: µm per pixel of ``image`` (its header's, or the user's), checked in :meth:`conclude`.
            mpp_source: where ``mpp`` came from.

        Raises:
            DataError: the bundle's rule refuses an input this large (the message says the fix).
        """
        prep = self.preparation
        H, W = image.shape[:2]
        sc = {"mpp": mpp, "mpp_source": mpp_source if mpp else None}
        if self.task == "segmentation":
            return Prepared(image, prep(image, resize=False)[None], "segmented", **sc)
        h, w = self.input_hw
        policy, factor = self.large_input_rule()
        large = W > factor * w or H > factor * h
        if (tile is True and (W > w or H > h)) or (tile is None and large and policy == "tile"):
            if h != w:
                raise DataError(f"{name}: tiling needs a square model input, the bundle's is {h}×{w}")
            from medattn.infer.tiling import image_tiles

            boxes, tiles = image_tiles(image, h)
            return Prepared(image, prep.batch(tiles, resize=False), "tiled", boxes, **sc)
        if tile is None and large:
            raise DataError(f"{name} is {W}×{H}, over {factor:g}× the model's {w}×{h} input; the bundle's rule "
                            "refuses large inputs: crop it to the model's field of view, or pass --tile to tile it")
        return Prepared(image, prep(image)[None], "as-is" if (H, W) == (h, w) else "resized", **sc)

    # -- model outputs --------------------------------------------------------------------------

    def trust_layers(self) -> list[str]:
        """Network layers whose pooled features the bundle's OOD model reads (empty without one)."""
        from medattn.trust.ood import HEAD, INPUT

        ood = self.meta.get("ood") or {}
        return [n for n in (ood.get("layers") or ([HEAD] if ood else [])) if n != INPUT]

    @torch.no_grad()
    def predict_tensor(self, x: torch.Tensor, details: dict[str, Any] | None = None) -> np.ndarray:
        """Probabilities for prepared input: ``B`` (binary), ``B×K``, or ``B×K×H×W`` (segmentation).

        Args:
            x: prepared batch.
            details: a dict to fill, for the trust checks, from the same forward passes (no second
                pass): ``features`` (``{layer: B×D}`` pooled features of the unaugmented view at
                :meth:`trust_layers`) and, for TTA bundles, ``views`` (``V×B×K`` probabilities of
                each view). Ignored for segmentation.
        """
        import threading

        from medattn.infer.tta import dihedral_mean
        from medattn.models.outputs import displacement_channels, probabilities
        from medattn.trust.ood import capture_features

        dense = self.task == "segmentation"
        head = self.seg_target if dense else "binary"
        want = details is not None and not dense
        layers = self.trust_layers() if want else []
        seen: list[torch.Tensor] = []

        def fn(v: torch.Tensor) -> torch.Tensor:
            if layers and not seen:  # the first view is the unaugmented input
                with capture_features(self.model, layers, thread=threading.get_ident()) as store:
                    y = probabilities(self.model(v), self.task, head)
                details["features"] = {k: torch.cat(t).numpy() for k, t in store.items() if t}  # type: ignore[index]
            else:
                y = probabilities(self.model(v), self.task, head)
            if want:
                seen.append(y.float().cpu().reshape(len(v), -1))
            return y

        # test-time augmentation recorded at training (bundle.json "tta"): 8 views; segmentation: the
        # 4 flips, as medattn.infer.tiling averages them (a hover head's distance maps turned back as vectors)
        views: int | str = ("flips" if dense else 8) if self.meta.get("tta") else 1
        probs = dihedral_mean(fn, x.to(self.device), dense=dense, views=views,
                              vectors=displacement_channels(self.task, head)).cpu().numpy()
        if want and len(seen) > 1:
            details["views"] = torch.stack(seen).numpy()  # type: ignore[index]
        return probs[:, 0] if self.task == "binary" else probs

    def forward(self, prepared: Prepared, batch_size: int = 16,
                details: dict[str, Any] | None = None) -> np.ndarray:
        """Probabilities of one prepared input: a row per view or tile (``N`` or ``N×K``), or
        ``K×H×W`` for segmentation (overlapping tiles, :func:`medattn.infer.tiling.tiled_dense_probs`);
        ``details`` as in :meth:`predict_tensor`, over all rows."""
        if prepared.handling == "segmented":
            from medattn.infer.tiling import tiled_dense_probs

            window, overlap = self.seg_tiling()
            return tiled_dense_probs(self.predict_tensor, prepared.x[0], window, overlap, max(1, batch_size // 4))
        x = prepared.x
        parts, found = [], []
        for i in range(0, len(x), batch_size):
            d: dict[str, Any] | None = {} if details is not None else None
            parts.append(self.predict_tensor(x[i:i + batch_size], d))
            found.append(d)
        if details is not None:
            details.update(join_details(found))  # type: ignore[arg-type]
        return np.concatenate(parts)

    def predict_rows(self, x: torch.Tensor) -> list[tuple[np.ndarray, dict[str, Any]]]:
        """:meth:`predict_tensor` of a batch as one ``(probabilities, details)`` pair per row (the REST
        micro-batcher hands each request its own row)."""
        d: dict[str, Any] = {}
        p = self.predict_tensor(x, d)
        return [(p[i], slice_details(d, i, i + 1)) for i in range(len(p))]

    def format_probs(self, p: np.ndarray) -> dict[str, Any]:
        """One image's decision from its probabilities (a row of :meth:`predict_tensor`)."""
        names = self.class_names
        if self.task == "binary":
            pp = float(p)
            return {"probabilities": {names[0]: 1 - pp, names[1]: pp},
                    "label": names[int(pp >= self.threshold)], "threshold": self.threshold}
        if self.task == "multiclass":
            out = {"probabilities": dict(zip(names, map(float, p), strict=True)), "label": names[int(np.argmax(p))]}
            view = self.meta.get("positive_view")
            if view:  # e.g. abnormal vs normal cells: summed probability at the validation threshold
                pv = float(sum(float(v) for n, v in zip(names, p, strict=True) if n in view["classes"]))
                out[view["name"]] = {"probability": pv, "positive": pv >= float(view["threshold"]),
                                     "threshold": float(view["threshold"])}
                for op, rec in (view.get("operating_points") or {}).items():  # e.g. screening
                    out[view["name"]][f"{op}_positive"] = pv >= float(rec["threshold"])
                    out[view["name"]][f"{op}_threshold"] = float(rec["threshold"])
            return out
        if self.task == "segmentation":
            lab = self.mask_from_probs(p)
            frac = {n: float((lab == i).mean()) for i, n in enumerate(names)}
            return {"class_fractions": frac, "mask_shape": list(lab.shape), "threshold": self.threshold}
        th = self.meta.get("thresholds") or [0.5] * len(names)
        return {"probabilities": dict(zip(names, map(float, p), strict=True)),
                "labels": [n for n, v, t in zip(names, p, th, strict=True) if v >= t],
                "thresholds": dict(zip(names, map(float, th), strict=True))}

    def mask_from_probs(self, p: np.ndarray) -> np.ndarray:
        """Label mask (``H×W`` uint8) of one segmentation output ``K×H×W`` (a hover head: its
        foreground channel at the threshold; its distance maps are not classes)."""
        if p.shape[0] == 1:
            return (p[0] >= self.threshold).astype(np.uint8)
        if self.seg_target == "hover":
            return (p[1] >= self.threshold).astype(np.uint8)
        return np.argmax(p, 0).astype(np.uint8)

    def conclude(self, prepared: Prepared, probs: np.ndarray, *, alpha: float | None = None,
                 method: str | None = None, mc_samples: int = 0, trust: bool = True,
                 details: dict[str, Any] | None = None) -> dict[str, Any]:
        """The answer for one input from its probabilities (:meth:`forward`): the decision, how the
        input was handled, and (``trust``) the checks of :mod:`medattn.trust.assess` (from
        ``details`` of the same forward passes when given, see :meth:`predict_tensor`).

        Tiled inputs are aggregated (binary and multi-label: maximum over tiles, an image is positive
        when any part is; multi-class: mean) and carry ``tiles``, ``tile_max``, ``tile_mean`` and
        ``tile_scores`` (a row × column grid); segmentation answers carry ``probability_map`` and
        ``instance_labels`` arrays for the door to write.
        """
        from medattn.trust.assess import assess, assess_tiles

        img = prepared.image
        base: dict[str, Any] = {"width": int(img.shape[1]), "height": int(img.shape[0]),
                                "handling": prepared.handling}
        if prepared.handling == "segmented":
            from medattn.infer.instances import instances_of, postprocess_setting

            setting = postprocess_setting(self.meta, probs.shape[0])
            labels = instances_of(probs, setting)
            window, overlap = self.seg_tiling()
            out = {**base, "tiling": f"{window}px overlap {overlap}", **self.format_probs(probs),
                   "objects": int(len(np.unique(labels[labels > 0]))), "postprocess": setting,
                   "probability_map": probs, "instance_labels": labels}
            if trust:
                out.update(assess(self, [img], prepared.x, probs[None], alpha=alpha, method=method,
                                  mc_samples=mc_samples, tiled=True, scale=[prepared.scale()])[0])
            return out
        if prepared.handling == "tiled":
            from medattn.infer.tiling import aggregate_tiles, tile_grid

            agg, score = aggregate_tiles(self.task, np.asarray(probs))
            out = {**base, **self.format_probs(agg), "tiles": len(score), "tile_size": int(prepared.x.shape[-1]),
                   "tile_max": float(score.max()), "tile_mean": float(score.mean()),
                   "tile_scores": tile_grid(prepared.boxes or [], score)}
            if trust:
                out.update(assess_tiles(self, img, prepared.x, np.asarray(probs), alpha=alpha, method=method,
                                        scale=prepared.scale(), details=details))
            return out
        out = {**base, **self.format_probs(probs[0])}
        if trust:
            out.update(assess(self, [img], prepared.x, np.asarray(probs), alpha=alpha, method=method,
                              mc_samples=mc_samples, scale=[prepared.scale()], details=details)[0])
        return out

    def infer(self, items: Sequence[Any] | Any, *, tile: bool | None = None, alpha: float | None = None,
              method: str | None = None, mc_samples: int = 0, trust: bool = True, batch_size: int = 16,
              errors: str = "raise", keep_image: bool = False, mpp: float | None = None) -> list[dict[str, Any]]:
        """The one inference entry: decode, apply the large-input rule, prepare, run, decide, check.

        ``medattn predict``, ``evaluate``, ``explain``, ``slide`` (per region), ``POST /v1/predict``,
        ``/v1/explain`` and the dashboard all answer through it (the REST micro-batcher runs the same
        :meth:`prepare_input` → :meth:`predict_tensor` → :meth:`conclude` steps).

        Args:
            items: images in any accepted form (one item is accepted too).
            tile: see :meth:`prepare_input`.
            alpha: miscoverage of the conformal prediction sets (default: the bundle's, 0.1).
            method: multiclass set score, ``aps`` (default) or ``raps``.
            mc_samples: MC-dropout passes (0 = off).
            trust: add warnings, OOD score, prediction sets and uncertainty.
            batch_size: images (or tiles) per forward pass.
            errors: ``raise`` (default) or ``return``: an input that cannot be read or is refused gets
                ``{"error": message}`` in its place and the others go on.
            keep_image: add the decoded image (``image``, a ``uint8`` array) to each answer, for doors
                that draw on it.
            mpp: µm per pixel of every input (``--mpp``), replacing what their headers declare; the
                scale check compares it with the bundle's (see :func:`medattn.trust.contract.check_scale`).

        Returns:
            One answer per input, in order (see :meth:`conclude`).
        """
        from medattn.errors import ConfigError

        if errors not in ("raise", "return"):
            raise ConfigError(f"errors must be 'raise' or 'return', got {errors!r}")
        if alpha is not None and not 0 < float(alpha) < 1:
            raise ConfigError(f"alpha must be between 0 and 1 (exclusive), got {alpha}")
        if not isinstance(items, (list, tuple)):
            items = [items]
        prepared: list[Prepared | dict[str, Any]] = []
        for i, it in enumerate(items):
            name = f"'{it}'" if isinstance(it, (str, Path)) else f"image {i}"
            try:
                info: dict[str, Any] = {}
                img = self.decode(it, name if isinstance(it, (str, Path)) else None, info=info)
                prepared.append(self.prepare_input(img, tile=tile, name=name, mpp=mpp or info.get("mpp"),
                                                   mpp_source="given" if mpp else info.get("mpp_source")))
            except (DataError, OSError, ValueError) as exc:
                if errors == "raise":
                    raise
                prepared.append({"error": str(exc).splitlines()[0][:300]})
        whole = [i for i, p in enumerate(prepared) if isinstance(p, Prepared) and len(p.x) == 1
                 and p.handling != "segmented"]
        probs: dict[int, np.ndarray] = {}
        found: dict[int, dict[str, Any] | None] = {}
        for s in range(0, len(whole), batch_size):
            chunk = whole[s:s + batch_size]
            d: dict[str, Any] | None = {} if trust else None
            rows = self.predict_tensor(torch.cat([prepared[i].x for i in chunk]), d)  # type: ignore[union-attr]
            probs.update({i: rows[k:k + 1] for k, i in enumerate(chunk)})
            found.update({i: slice_details(d, k, k + 1) for k, i in enumerate(chunk)})
        out = []
        for i, p in enumerate(prepared):
            if not isinstance(p, Prepared):
                out.append(p)
                continue
            if i not in probs:
                found[i] = {} if trust else None
                probs[i] = self.forward(p, batch_size, found[i])
            out.append(self.conclude(p, probs[i], alpha=alpha, method=method, mc_samples=mc_samples, trust=trust,
                                     details=found[i]))
            if keep_image:
                out[-1]["image"] = p.image
        return out

    @property
    def card(self) -> dict[str, Any]:
        """The bundle's model card (built from its metadata for bundles saved before cards existed)."""
        from medattn.trust.card import build_card

        return dict(self.meta.get("card") or build_card(self.meta))
