"""Outputs a clinician can trust: input contract, out-of-distribution score, conformal prediction
sets, uncertainty and the model card; all stored in ``bundle.json`` as plain numbers.

Modules: :mod:`~medattn.trust.contract` (input checks), :mod:`~medattn.trust.ood` (feature-space
Gaussian), :mod:`~medattn.trust.conformal` (split-conformal sets), :mod:`~medattn.trust.uncertainty`
(entropy, TTA, MC dropout), :mod:`~medattn.trust.selective` (risk–coverage),
:mod:`~medattn.trust.card` (model card content) and :mod:`~medattn.trust.assess` (per-prediction
outputs). They are fitted at training by :mod:`medattn.engine.trust_fit` and written into bundles by
:mod:`medattn.bundle`.
"""

from __future__ import annotations

from medattn.trust.card import add_external_evaluation, build_card, format_card
from medattn.trust.conformal import conformal_quantile, fit_conformal, prediction_sets

__all__ = ["add_external_evaluation", "build_card", "format_card", "fit_conformal", "prediction_sets",
           "conformal_quantile"]
