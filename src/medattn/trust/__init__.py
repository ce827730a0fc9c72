"""Outputs a clinician can trust: input contract, out-of-distribution score, conformal prediction
sets, uncertainty and the model card; all stored in ``bundle.json`` as plain numbers.

Modules: :mod:`~medattn.trust.contract` (input checks), :mod:`~medattn.trust.ood` (feature-space
Gaussian), :mod:`~medattn.trust.conformal` (split-conformal sets), :mod:`~medattn.trust.uncertainty`
(entropy, TTA, MC dropout), :mod:`~medattn.trust.selective` (risk–coverage),
:mod:`~medattn.trust.card` (model card), :mod:`~medattn.trust.fit` (fitting at training) and
:mod:`~medattn.trust.assess` (per-prediction outputs).
"""

from __future__ import annotations

from medattn.trust.card import append_external_evaluation, build_card, format_card
from medattn.trust.conformal import conformal_quantile, fit_conformal, prediction_sets

__all__ = ["append_external_evaluation", "build_card", "format_card", "fit_conformal", "prediction_sets",
           "conformal_quantile"]
