"""Model-randomisation sanity check (Adebayo et al. 2018).

An explanation that does not change when the model's weights are replaced by random ones does
not explain the model (an edge detector passes for a saliency map that way). The check computes
maps for the trained model and for a copy with re-initialised weights and measures how similar
they stay (Spearman rank correlation per image): the check *passes* when the similarity falls
below ``threshold``, i.e. the maps depend on what the model learned.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from medattn.errors import ConfigError

__all__ = ["RandomisationResult", "randomise_weights", "randomisation_check", "rank_correlation"]


def randomise_weights(model: nn.Module, seed: int = 0, modules: Sequence[nn.Module] | None = None) -> nn.Module:
    """Re-initialise the weights of ``model`` (in place) or of only ``modules`` in it.

    Modules with ``reset_parameters`` use it (BatchNorm also resets its running statistics);
    any other parameter is replaced by Gaussian noise of the same standard deviation.
    """
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        scope = list(modules) if modules is not None else [model]
        for root in scope:
            done: set[int] = set()
            for m in root.modules():
                if hasattr(m, "reset_parameters") and callable(m.reset_parameters):
                    m.reset_parameters()
                    done.update(id(p) for p in m.parameters(recurse=False))
            with torch.no_grad():
                for p in root.parameters():
                    if id(p) not in done:
                        std = float(p.std()) if p.numel() > 1 else 0.0
                        p.copy_(torch.randn_like(p) * (std if std > 0 else 0.1))
    finally:
        torch.random.set_rng_state(gen_state)
    return model


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of two maps (ties get their average rank; a constant map → 0)."""
    from scipy.stats import rankdata

    fa = np.asarray(a, np.float64).reshape(-1)
    fb = np.asarray(b, np.float64).reshape(-1)
    if np.ptp(fa) == 0 or np.ptp(fb) == 0:
        return 0.0
    return float(np.corrcoef(rankdata(fa), rankdata(fb))[0, 1])


@dataclass
class RandomisationResult:
    """Outcome of :func:`randomisation_check`.

    Attributes:
        similarity: mean |Spearman| between trained and randomised-model maps.
        per_image: the per-image values.
        passed: ``similarity < threshold`` (the maps changed: the explanation depends on the weights).
        threshold: the decision threshold used.
        cascade: ``[(randomised up to module name, mean |Spearman|), ...]`` when run as a cascade.
    """

    similarity: float
    per_image: list[float]
    passed: bool
    threshold: float
    cascade: list[tuple[str, float]] = field(default_factory=list)


def _default_explainer(method: str, layer: str | None) -> Callable[[nn.Module, torch.Tensor, Sequence[object] | None], np.ndarray]:
    def run(m: nn.Module, x: torch.Tensor, targets: Sequence[object] | None) -> np.ndarray:
        from medattn.explain.cam import compute_cams

        return compute_cams(m, x, targets, method=method, layer=layer, batch_size=len(x))

    return run


def randomisation_check(
    model: nn.Module,
    x: torch.Tensor,
    targets: Sequence[object] | None = None,
    method: str = "gradcam",
    layer: str | None = None,
    explainer: Callable[[nn.Module, torch.Tensor, Sequence[object] | None], np.ndarray] | None = None,
    threshold: float = 0.5,
    cascade: bool = False,
    seed: int = 20180308,
) -> RandomisationResult:
    """Do the maps change when the weights are randomised?

    Args:
        model: the trained model (left untouched: a copy is randomised).
        x: preprocessed images.
        targets: one target per image (default: the trained model's top prediction, kept fixed
            for the randomised copy so both explain the same class).
        method, layer: CAM settings when ``explainer`` is not given.
        explainer: ``f(model, x, targets) -> B×H×W`` maps, to check another kind of map.
        threshold: the largest mean |Spearman| that still counts as "changed".
        cascade: also randomise top-level children one by one from the output side and record
            the similarity after each step (the final value is then the fully randomised model).
        seed: seed of the re-initialisation (keep it apart from the seed the model was built
            with: re-initialising an untrained model with its own seed reproduces it exactly).
    """
    if not 0 < threshold <= 1:
        raise ConfigError(f"threshold must be in (0, 1], got {threshold}")
    run = explainer or _default_explainer(method, layer)
    if targets is None:
        from medattn.explain.cam import default_targets

        was = model.training
        model.eval()
        targets = default_targets(model, x.to(next(model.parameters()).device))
        model.train(was)
    ref = run(model, x, targets)
    rnd = copy.deepcopy(model)

    def sims(maps: np.ndarray) -> list[float]:
        return [abs(rank_correlation(a, b)) for a, b in zip(ref, maps, strict=True)]

    steps: list[tuple[str, float]] = []
    if cascade:
        children = [(n, c) for n, c in rnd.named_children() if any(True for _ in c.parameters())]
        for k, (name, child) in enumerate(reversed(children)):
            randomise_weights(rnd, seed + k, [child])
            steps.append((name, float(np.mean(sims(run(rnd, x, targets))))))
    randomise_weights(rnd, seed)
    per = sims(run(rnd, x, targets))
    sim = float(np.mean(per)) if per else float("nan")
    return RandomisationResult(similarity=sim, per_image=per, passed=bool(sim < threshold),
                               threshold=threshold, cascade=steps)
