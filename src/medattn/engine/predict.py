"""Batched inference over a dataset."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

__all__ = ["predict_probs"]


@torch.no_grad()
def predict_probs(model: nn.Module, ds: Dataset, batch_size: int = 128, num_workers: int = 0,
                  tta: int = 1) -> np.ndarray:
    """Sigmoid probabilities of a single-logit model (``N``) or per-output (``N×K``).

    ``tta`` > 1 averages the probabilities of that many rotated/mirrored views
    (:func:`medattn.infer.tta.dihedral_mean`: 2, 4 or 8).
    """
    from medattn.infer.tta import dihedral_mean

    model.eval()
    dev = next(model.parameters()).device
    out = []
    for batch in DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers):
        p = dihedral_mean(lambda v: torch.sigmoid(model(v).float()), batch[0].to(dev), views=tta)
        out.append(p.cpu().numpy())
    p = np.concatenate(out)
    return p[:, 0] if p.ndim == 2 and p.shape[1] == 1 else p
