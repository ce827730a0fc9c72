"""Model bundles: the file format (:mod:`.format`, the only writer of ``bundle.json``; :mod:`.chained`,
segment → classify pairs and their ``pipeline.json``), the predictor (:mod:`.predictor`, the one
inference entry) and :func:`load_bundle` (:mod:`.load`)."""

from __future__ import annotations

from medattn.bundle.chained import (
    ChainedPredictor,
    chain_predictor,
    is_chained_bundle,
    load_chained_bundle,
    save_chained_bundle,
)
from medattn.bundle.format import (
    BUNDLE_FORMAT,
    TASKS,
    append_external_evaluation,
    read_bundle_files,
    save_bundle,
    update_bundle_json,
    write_bundle_json,
)
from medattn.bundle.load import load_bundle
from medattn.bundle.predictor import Predictor, Prepared, main_output
from medattn.decode import (
    DEFAULT_MAX_PIXELS,
    IMAGE_FORMATS,
    ImageTooLargeError,
    UnsupportedImageError,
    read_dicom,
    read_image,
    sniff_format,
)

__all__ = [
    "save_bundle", "load_bundle", "read_bundle_files", "write_bundle_json", "update_bundle_json",
    "append_external_evaluation", "Predictor", "Prepared", "ChainedPredictor", "chain_predictor",
    "save_chained_bundle", "load_chained_bundle", "is_chained_bundle",
    "BUNDLE_FORMAT", "TASKS", "IMAGE_FORMATS", "DEFAULT_MAX_PIXELS", "ImageTooLargeError", "UnsupportedImageError",
    "sniff_format", "read_image", "read_dicom", "main_output",
]
