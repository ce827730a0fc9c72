"""The bundle file format: ``model.safetensors`` + ``bundle.json``, written and read here only.

A bundle is a folder (or a ``.zip`` of one). Loading never unpickles anything: weights come from
safetensors, the architecture is rebuilt from the registry by name and arguments, and the
weights' sha256 must match ``bundle.json`` (tampered weights are refused). :func:`write_bundle_json`
is the only writer of ``bundle.json`` (new bundles, model-card updates such as
:func:`append_external_evaluation`, chained bundles' parts in :mod:`medattn.bundle.chained`).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

from torch import nn

from medattn import __version__
from medattn.bundle_meta import BUNDLE_TASKS, check_bundle_meta
from medattn.errors import BundleError, MedattnError
from medattn.io import atomic_dir, atomic_path, atomic_write_text, to_jsonable

__all__ = ["save_bundle", "read_bundle_files", "build_model", "write_bundle_json", "bundle_json_text",
           "update_bundle_json", "append_external_evaluation", "BUNDLE_FORMAT", "TASKS"]

BUNDLE_FORMAT = 1
_REQUIRED = ("architecture", "class_names", "input_size", "in_chans", "mean", "std", "weights_sha256")
TASKS = BUNDLE_TASKS  # one list of tasks, kept with the bundle.json checks
_MAX_WEIGHTS = 4 << 30  # refuse zip members that would inflate beyond 4 GiB


def _weights_bytes(model: nn.Module) -> bytes:
    from safetensors.torch import save

    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return save(sd)


def save_bundle(model: nn.Module, meta: dict[str, Any], path: str | Path) -> Path:
    """Write a bundle folder (or ``.zip`` when ``path`` ends with it) atomically.

    Args:
        model: a model built by :func:`medattn.models.create_model`.
        meta: ``class_names`` (in output order), ``input_size``, ``in_chans``, ``mean``, ``std``,
            and optionally ``task``, ``threshold``, ``metrics``, ``recipe``, ``split_hash``.
    """
    from medattn.models import model_spec

    spec = model_spec(model)
    missing = [k for k in ("class_names", "input_size", "in_chans", "mean", "std") if k not in meta]
    if missing:
        raise BundleError(f"bundle metadata lacks {', '.join(missing)}")
    if meta.get("task", "binary") not in TASKS:
        raise BundleError(f"bundle task '{meta.get('task')}' is not one of {', '.join(TASKS)}")
    weights = _weights_bytes(model)
    doc = {
        "format": BUNDLE_FORMAT,
        "medattn_version": __version__,
        "architecture": {"name": spec["name"], "kwargs": spec["kwargs"]},
        "task": meta.get("task", "binary"),
        **{k: v for k, v in meta.items() if k != "task"},
        "weights_file": "model.safetensors",
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
    }
    if "card" not in doc:  # model card (intended use, data, evaluation, limitations): medattn.trust.card
        from medattn.trust.card import build_card

        doc["card"] = build_card(doc)
    text = bundle_json_text(doc)
    target = Path(path)
    if target.suffix == ".zip":
        with atomic_path(target) as tmp:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
                zf.writestr("bundle.json", text)
                zf.writestr("model.safetensors", weights)
    else:
        with atomic_dir(target) as tmp:
            (tmp / "model.safetensors").write_bytes(weights)
            (tmp / "bundle.json").write_text(text)
    return target


def read_bundle_files(path: str | Path) -> tuple[dict[str, Any], bytes]:
    """``(bundle.json as dict, weights bytes)`` from a folder or zip, validated."""
    p = Path(path)
    try:
        if p.is_dir():
            jf, wf = p / "bundle.json", p / "model.safetensors"
            if not jf.is_file():
                raise BundleError(f"'{p}' is not a bundle: bundle.json is missing")
            meta_text, weights = jf.read_text(), (wf.read_bytes() if wf.is_file() else None)
        elif p.is_file() and zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as zf:
                names = set(zf.namelist())
                if "bundle.json" not in names:
                    raise BundleError(f"'{p}' is not a bundle: bundle.json is missing from the zip")
                sizes = {i.filename: i.file_size for i in zf.infolist()}
                if sizes["bundle.json"] > 16 << 20 or sizes.get("model.safetensors", 0) > _MAX_WEIGHTS:
                    raise BundleError(f"'{p}' holds members too large for a bundle; refusing to inflate it")
                meta_text = zf.read("bundle.json").decode("utf-8")
                weights = zf.read("model.safetensors") if "model.safetensors" in names else None
        elif p.exists():
            raise BundleError(f"'{p}' is not a bundle folder or .zip; pass the folder written by medattn")
        else:
            raise BundleError(f"bundle '{p}' not found")
    except (OSError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
        raise BundleError(f"cannot read bundle '{p}': {exc}") from None
    try:
        meta = json.loads(meta_text)
    except json.JSONDecodeError as exc:
        raise BundleError(f"'{p}/bundle.json' is not valid JSON ({exc})") from None
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise BundleError(f"'{p}/bundle.json' lacks {', '.join(missing)}")
    if weights is None:
        raise BundleError(f"'{p}' has no model.safetensors")
    check_bundle_meta(meta, str(p))  # one line naming a malformed field
    digest = hashlib.sha256(weights).hexdigest()
    if digest != meta["weights_sha256"]:
        raise BundleError(
            f"'{p}' weights do not match bundle.json (sha256 {digest[:12]}… ≠ {str(meta['weights_sha256'])[:12]}…); "
            "the bundle was modified or corrupted: re-export it"
        )
    return meta, weights


def build_model(meta: dict[str, Any], weights: bytes, where: str) -> nn.Module:
    from safetensors.torch import load

    from medattn.models import create_model

    arch = meta["architecture"]
    kwargs = dict(arch.get("kwargs", {}))
    kwargs.pop("pretrained", None)
    try:
        model = create_model(arch["name"], **kwargs)
        sd = load(weights)
        model.load_state_dict(sd, strict=True)
    except MedattnError:
        raise
    except Exception as exc:  # shape mismatch, bad safetensors
        raise BundleError(f"bundle '{where}' weights do not fit architecture {arch['name']}: {str(exc)[:300]}") from None
    model.eval()
    return model


def bundle_json_text(doc: dict[str, Any]) -> str:
    """``bundle.json`` text of a metadata document (JSON, indented, numpy values converted)."""
    return json.dumps(to_jsonable(doc), indent=2) + "\n"


def write_bundle_json(folder: str | Path, doc: dict[str, Any]) -> Path:
    """Write ``folder/bundle.json`` atomically (the only writer of bundle.json files)."""
    return atomic_write_text(Path(folder) / "bundle.json", bundle_json_text(doc))


def update_bundle_json(folder: str | Path, update: Any) -> dict[str, Any]:
    """Apply ``update(meta) -> meta`` to a bundle folder's ``bundle.json`` and write it back atomically
    (model-card updates such as external evaluations); the weights and their checksum stay as they
    are, so the bundle still loads.

    Raises:
        BundleError: not a bundle folder, or an unreadable bundle.json.
    """
    p = Path(folder)
    jf = p / "bundle.json"
    if not jf.is_file():
        raise BundleError(f"'{p}' is not a bundle folder: bundle.json is missing")
    try:
        meta = json.loads(jf.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"'{jf}' is not readable JSON ({exc})") from None
    meta = update(meta)
    write_bundle_json(p, meta)
    return meta


def append_external_evaluation(bundle_dir: str | Path, record: dict[str, Any]) -> dict[str, Any]:
    """Append one external evaluation (data, n_items, n_groups, metrics) to a bundle folder's model
    card (:func:`medattn.trust.card.add_external_evaluation`).

    Only ``bundle.json`` changes (atomically); the weights and their checksum stay as they are.
    Zipped bundles are left untouched (returns the record unchanged).

    Raises:
        BundleError: not a bundle folder, or an unreadable bundle.json.
    """
    from medattn.trust.card import add_external_evaluation

    p = Path(bundle_dir)
    if p.is_file() and zipfile.is_zipfile(p):
        return record
    entry: dict[str, Any] = {}

    def add(meta: dict[str, Any]) -> dict[str, Any]:
        entry.update(add_external_evaluation(meta, record))
        return meta

    update_bundle_json(p, add)
    return entry
