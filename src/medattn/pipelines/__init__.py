"""Composite pipelines: segment-then-classify (Python API, paired evaluation, chained bundles)."""

from __future__ import annotations

from medattn.pipelines.chain_eval import evaluate_chain, items_from_run
from medattn.pipelines.chained_bundle import (
    ChainedPredictor,
    is_chained_bundle,
    load_chained_bundle,
    load_pipeline,
    save_chained_bundle,
)
from medattn.pipelines.emphasis import EMPHASIS_MODES, emphasise, region_boxes, region_mask
from medattn.pipelines.segment_classify import ChainResult, SegmentClassifyPipeline

__all__ = [
    "EMPHASIS_MODES", "emphasise", "region_boxes", "region_mask",
    "SegmentClassifyPipeline", "ChainResult",
    "evaluate_chain", "items_from_run",
    "ChainedPredictor", "save_chained_bundle", "load_chained_bundle", "load_pipeline", "is_chained_bundle",
]
