"""``medattn search``: Optuna over a recipe's ``search.space``; the objective is the best
validation monitor of each trial. The test split is never scored (no evaluation runs at all)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from medattn.engine.config import Recipe, apply_overrides, recipe_from_dict, recipe_to_yaml
from medattn.errors import ConfigError
from medattn.io import atomic_write_json, atomic_write_text, ensure_dir

__all__ = ["run_search", "suggest"]


def suggest(trial: Any, space: dict[str, Any]) -> dict[str, Any]:
    """Sample one value per dotted recipe path of ``space``."""
    out: dict[str, Any] = {}
    for key, p in space.items():
        if p.type == "categorical":
            if not p.choices:
                raise ConfigError(f"field 'search.space.{key}.choices': a categorical parameter needs choices")
            out[key] = trial.suggest_categorical(key, p.choices)
            continue
        if p.low is None or p.high is None or p.low >= p.high:
            raise ConfigError(f"field 'search.space.{key}': needs low < high, got {p.low}, {p.high}")
        if p.type == "int":
            out[key] = trial.suggest_int(key, int(p.low), int(p.high), log=p.log)
        else:
            out[key] = trial.suggest_float(key, float(p.low), float(p.high), log=p.log)
    return out


def run_search(recipe_ref: str | Path | Recipe, *, trials: int, out: str | Path, data: str | Path | None = None,
               smoke: bool = False, overrides: list[str] | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Run ``trials`` Optuna trials; write ``trials.csv``, ``search.json`` and ``best_recipe.yaml``."""
    from medattn.extras import require_extra

    require_extra("search", ["optuna"], "medattn search")
    import optuna

    from medattn.engine.runner import _data_root, resolve_recipe, train_run

    base = recipe_ref if isinstance(recipe_ref, Recipe) else resolve_recipe(recipe_ref, overrides, smoke)
    if not base.search.space:
        raise ConfigError(f"field 'search.space': recipe '{base.name}' defines no search space")
    root = ensure_dir(out)
    data_root = _data_root(base, data, root, smoke)
    raw = base.model_dump(mode="json")
    metric, direction = base.default_monitor(), "maximize" if base.trainer.mode == "max" else "minimize"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.RandomSampler(seed=base.trainer.seed) if base.search.sampler == "random" \
        else optuna.samplers.TPESampler(seed=base.trainer.seed)
    study = optuna.create_study(direction=direction, sampler=sampler)
    rows: list[dict[str, Any]] = []

    def objective(trial: Any) -> float:
        params = suggest(trial, base.search.space)
        ov = {**params, "trainer.max_epochs": base.search.max_epochs, "trainer.progress": False}
        r = recipe_from_dict(apply_overrides(raw, ov), source=f"search trial {trial.number}")
        t0 = time.time()
        res = train_run(r, out=root / f"trial_{trial.number:03d}", data=data_root, evaluate=False)
        vals = [s.get("best_val") for s in res["stages"].values() if s.get("best_val") is not None]
        value = float(vals[-1]) if vals else float("nan")
        rows.append({"trial": trial.number, metric: value, "seconds": round(time.time() - t0, 1), **params})
        _write_trials(root / "trials.csv", rows)
        return value

    study.optimize(objective, n_trials=trials, timeout=timeout)
    done = [t for t in study.trials if t.value is not None and t.value == t.value]
    if not done:
        raise ConfigError("no search trial produced a validation score; check the recipe and the data")
    best = study.best_trial
    best_recipe = recipe_from_dict(apply_overrides(raw, best.params), source="best search trial")
    best_path = atomic_write_text(root / "best_recipe.yaml", recipe_to_yaml(best_recipe))
    summary = {"recipe": base.name, "metric": metric, "direction": direction, "split": "valid",
               "n_trials": len(study.trials), "best_trial": best.number, "best_value": best.value,
               "best_params": best.params, "best_recipe": str(best_path)}
    atomic_write_json(root / "search.json", summary)
    return summary


def _write_trials(path: Path, rows: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    lines = [",".join(keys)] + [",".join(str(r.get(k, "")) for k in keys) for r in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")
