"""Composite pipelines: segment-then-classify (Python API, paired evaluation). The chained bundle
file format lives in :mod:`medattn.bundle.chained` and the chain's model in
:mod:`medattn.models.chain`; their public names are re-exported here."""

from __future__ import annotations

from medattn.bundle.chained import (
    ChainedPredictor,
    is_chained_bundle,
    load_chained_bundle,
    save_chained_bundle,
)
from medattn.models.emphasis import EMPHASIS_MODES, emphasise, region_boxes, region_mask
from medattn.pipelines.chain_eval import evaluate_chain, items_from_run
from medattn.pipelines.segment_classify import ChainResult, SegmentClassifyPipeline, load_pipeline

__all__ = [
    "EMPHASIS_MODES", "emphasise", "region_boxes", "region_mask",
    "SegmentClassifyPipeline", "ChainResult",
    "evaluate_chain", "items_from_run",
    "ChainedPredictor", "save_chained_bundle", "load_chained_bundle", "load_pipeline", "is_chained_bundle",
]
