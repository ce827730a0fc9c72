"""Export a bundle to ONNX (dynamic batch axis) or TorchScript, with a numerical parity check.

The exported graph takes the *preprocessed* input (``B×C×H×W``, normalised with the bundle's
mean/std) and returns the model's logits; a JSON sidecar (``<out>.json``) carries bundle.json so
the preprocessing travels with the file. Stain normalisation (``stain_normalization``), like
mean/std, is preprocessing outside the graph: callers apply it first (``Predictor.preprocess``).
Parity: the export and PyTorch are run on the same preprocessed inputs at two batch sizes (random
tensors in the normalised space, so the check covers the graph, which is all that is exported)
and the largest absolute difference must be ≤ ``atol``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medattn.bundle import Predictor, load_bundle, main_output
from medattn.errors import ConfigError, MedattnError, ModelError
from medattn.io import atomic_path, atomic_write_text, to_jsonable

__all__ = ["EXPORT_FORMATS", "export_bundle", "export_onnx", "export_torchscript", "check_parity", "ExportResult"]

EXPORT_FORMATS = ("onnx", "torchscript")
ExportResult = dict[str, Any]


class _Logits(nn.Module):
    """The model's main logits as a single tensor (AG-CNN and U-Net heads may return dicts)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return main_output(self.model(x))


def _inputs(pred: Predictor, batches: tuple[int, ...], seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    h, w = pred.input_hw
    c = int(pred.meta["in_chans"])
    return [torch.randn(b, c, h, w, generator=g) for b in batches]


@torch.no_grad()
def _reference(net: nn.Module, xs: list[torch.Tensor]) -> list[np.ndarray]:
    return [net(x).float().numpy() for x in xs]


def check_parity(run: Any, net: nn.Module, xs: list[torch.Tensor], atol: float) -> float:
    """Largest absolute difference between ``run(x)`` and ``net(x)`` over ``xs``.

    Raises:
        ModelError: the difference exceeds ``atol`` (the export is not trustworthy).
    """
    ref = _reference(net, xs)
    worst = 0.0
    for x, r in zip(xs, ref, strict=True):
        got = np.asarray(run(x), dtype=np.float32)
        if got.shape != r.shape:
            raise ModelError(f"export returned shape {got.shape} for batch {len(x)}, PyTorch {r.shape}")
        worst = max(worst, float(np.max(np.abs(got - r))) if r.size else 0.0)
    if not worst <= atol:
        raise ModelError(f"export parity failed: max abs difference {worst:.3g} > {atol:g}")
    return worst


def export_onnx(pred: Predictor, out: str | Path, *, opset: int = 18, atol: float = 1e-4, seed: int = 0) -> ExportResult:
    """Write ``out`` (.onnx) with a dynamic batch axis and check it with ONNX Runtime (CPU)."""
    import onnxruntime as ort

    net = _Logits(pred.model).eval().cpu()
    xs = _inputs(pred, (2, 3), seed)
    target = Path(out)
    with atomic_path(target) as tmp:
        onnx_tmp = tmp.with_suffix(".onnx")
        try:
            _onnx_export(net, xs[0], onnx_tmp, opset)
            sess = ort.InferenceSession(str(onnx_tmp), providers=["CPUExecutionProvider"])
            name = sess.get_inputs()[0].name
            diff = check_parity(lambda x: sess.run(None, {name: x.numpy()})[0], net, xs, atol)
            onnx_tmp.replace(tmp)
        finally:
            onnx_tmp.unlink(missing_ok=True)
            Path(str(onnx_tmp) + ".data").unlink(missing_ok=True)
    return {"format": "onnx", "path": str(target), "max_abs_diff": diff, "batches": [len(x) for x in xs],
            "opset": opset}


def _onnx_export(net: nn.Module, x: torch.Tensor, path: Path, opset: int) -> None:
    import warnings

    batch = torch.export.Dim("batch", min=1, max=1024)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prog = torch.onnx.export(net, (x,), dynamo=True, opset_version=opset, input_names=["input"],
                                     output_names=["logits"], dynamic_shapes={"x": {0: batch}},
                                     external_data=False, verbose=False)
            prog.save(str(path), external_data=False)
    except MedattnError:
        raise
    except Exception as exc:  # noqa: BLE001 - exporter failures come in many types
        raise ModelError(f"ONNX export of {type(net.model).__name__} failed: {str(exc).strip().splitlines()[0][:300]}") from None


def export_torchscript(pred: Predictor, out: str | Path, *, atol: float = 1e-4, seed: int = 0) -> ExportResult:
    """Write ``out`` (.pt TorchScript archive, traced) and check it against eager PyTorch."""
    import warnings

    net = _Logits(pred.model).eval().cpu()
    xs = _inputs(pred, (2, 3), seed)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ts = torch.jit.trace(net, xs[0], check_trace=False)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"TorchScript trace of {type(pred.model).__name__} failed: {str(exc)[:300]}") from None
    def run(x: torch.Tensor) -> np.ndarray:
        try:
            with torch.no_grad():
                return ts(x).detach().numpy()
        except Exception as exc:  # noqa: BLE001 - the trace froze a batch-dependent shape
            raise ModelError(f"traced {type(pred.model).__name__} fails on batch {len(x)} (data-dependent "
                             f"control flow cannot be traced): {str(exc).strip().splitlines()[-1][:200]}") from None

    diff = check_parity(run, net, xs, atol)
    target = Path(out)
    with atomic_path(target) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(ts, str(tmp))
    return {"format": "torchscript", "path": str(target), "max_abs_diff": diff, "batches": [len(x) for x in xs]}


def export_bundle(bundle: str | Path, fmt: str = "onnx", out: str | Path | None = None, *,
                  atol: float = 1e-4, opset: int = 18) -> ExportResult:
    """Export bundle ``bundle`` to ``fmt`` at ``out`` (default next to the bundle) plus a JSON sidecar.

    Raises:
        ConfigError: unknown format. BundleError: bad bundle. ModelError: export or parity failure.
    """
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format '{fmt}'; valid: {', '.join(EXPORT_FORMATS)}")
    pred = load_bundle(bundle, device="cpu")
    src = Path(bundle)
    default = src.with_suffix("") if src.suffix == ".zip" else src / "model"
    target = Path(out) if out else default.with_name(default.name + (".onnx" if fmt == "onnx" else ".torchscript.pt"))
    if target.is_dir():
        raise ConfigError(f"--out '{target}' is a folder; pass a file name such as model.onnx")
    res = export_onnx(pred, target, opset=opset, atol=atol) if fmt == "onnx" else export_torchscript(pred, target, atol=atol)
    pre = "stain-normalised (bundle.stain_normalization), resized, " if pred.meta.get("stain_normalization") else ""
    side = {"export": {k: v for k, v in res.items() if k != "path"},
            "input": f"preprocessed B×C×H×W float32 ({pre}scaled to [0, 1], normalised with mean/std)",
            "output": "logits", "bundle": pred.meta}
    atomic_write_text(str(target) + ".json", json.dumps(to_jsonable(side), indent=2) + "\n")
    return res
