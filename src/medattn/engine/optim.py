"""Optimisers (Adam, AdamW, NAdam, SGD) and LR schedulers (plateau, step, cosine, one-cycle)."""

from __future__ import annotations

from typing import Any

import torch

from medattn.errors import ConfigError

__all__ = ["build_optimizer", "build_scheduler", "OPTIMIZERS", "SCHEDULERS"]

OPTIMIZERS = ("adam", "adamw", "nadam", "sgd")
SCHEDULERS = ("none", "plateau", "step", "cosine", "onecycle")


def build_optimizer(params: Any, name: str = "adam", lr: float = 1e-3, weight_decay: float = 0.0,
                    momentum: float = 0.9) -> torch.optim.Optimizer:
    """Adam, AdamW, NAdam or SGD (Nesterov momentum) by name."""
    name = name.lower()
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "nadam":
        return torch.optim.NAdam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True)
    raise ConfigError(f"field 'optimizer.name': unknown optimizer '{name}'; use {', '.join(OPTIMIZERS)}")


def build_scheduler(
    opt: torch.optim.Optimizer, name: str, *, monitor: str, mode: str = "max", factor: float = 0.3,
    patience: int = 3, step_size: int = 10, min_lr: float = 0.0, max_epochs: int = 1,
    total_steps: int | None = None, warmup_fraction: float = 0.3,
) -> dict[str, Any] | None:
    """A Lightning ``lr_scheduler`` config dict, or ``None`` for a constant LR.

    ``plateau`` watches ``monitor`` (a validation metric); ``onecycle`` steps every batch and
    needs ``total_steps``; the others step once per epoch.
    """
    name = name.lower()
    if name == "none":
        return None
    if name == "plateau":
        s = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=factor, patience=patience,
                                                       min_lr=min_lr)
        return {"scheduler": s, "monitor": monitor, "interval": "epoch", "strict": False}
    if name == "step":
        return {"scheduler": torch.optim.lr_scheduler.StepLR(opt, step_size=step_size, gamma=factor),
                "interval": "epoch"}
    if name == "cosine":
        s = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, max_epochs), eta_min=min_lr)
        return {"scheduler": s, "interval": "epoch"}
    if name == "onecycle":
        lrs = [g["lr"] for g in opt.param_groups]
        s = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lrs, total_steps=max(2, int(total_steps or 2)),
                                                pct_start=warmup_fraction)
        return {"scheduler": s, "interval": "step"}
    raise ConfigError(f"field 'scheduler.name': unknown scheduler '{name}'; use {', '.join(SCHEDULERS)}")
