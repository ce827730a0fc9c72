"""CLI verbs of the engine area: ``train``, ``search``, ``evaluate``, ``recipes``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from medattn.commands.options import (
    DataPath,
    Folds,
    OnBadFile,
    Resume,
    SetOverrides,
    Smoke,
    SplitCsv,
    SplitName,
    on_bad_file_mode,
)

__all__ = ["register"]


def _echo_cv(out: Path, cv: dict) -> None:
    """The console lines of a finished cross-validation."""
    from medattn.metrics.summary import headline_keys

    typer.echo(f"cross-validation {out}: {cv['folds']} folds, {cv['items']} items, {cv['groups']} groups "
               f"({cv['seconds']} s)")
    for name in headline_keys(cv["metrics"]):
        m = cv["metrics"][name]
        typer.echo(f"  {name:<20} {m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]  ({m['interval']})")


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""

    @app.command()
    def train(
        recipe: Annotated[str, typer.Argument(help="Recipe name (see `medattn recipes`) or YAML path; with "
                                                   "--resume, the run directory may stand here.")] = "",
        data: DataPath = None,
        out: Annotated[Path | None, typer.Option(help="Run directory (default runs/<recipe name>).")] = None,
        smoke: Smoke = False,
        set_: SetOverrides = None,
        resume: Resume = False,
        folds: Folds = None,
        on_bad_file: OnBadFile = None,
    ) -> None:
        """Train a recipe into a run directory (metrics with CIs, bundle, report.html). --resume
        continues the interrupted run in --out (or `medattn train --resume RUN`). --folds K: OUT/fold_k
        runs, cv_summary.json/csv and out-of-fold test_predictions.csv. --on-bad-file overrides the
        recipe's data.on_bad_file (skipped files are listed in RUN/bad_files.txt)."""
        from medattn.engine.cv import cross_validate
        from medattn.engine.runner import is_rank_zero, train_run
        from medattn.errors import ConfigError

        if resume:
            for name, given in (("--on-bad-file", on_bad_file is not None), ("--set", bool(set_)),
                                ("--folds", folds is not None)):
                if given:
                    raise ConfigError(f"{name} applies to new runs; --resume continues a run with the recipe.yaml "
                                      "it was started with")
            if out is None:
                if not recipe:
                    raise ConfigError("--resume needs the run: `medattn train --resume RUN` or --out RUN")
                out = Path(recipe) if Path(recipe).is_dir() else Path("runs") / Path(recipe).stem
            if (Path(out) / "folds.csv").is_file():  # an interrupted cross-validation
                _echo_cv(out, cross_validate(recipe, out=out, folds=None, data=data, resume=True))
                return
            summary = train_run(recipe, out=out, data=data, resume=True)
            _echo_summary(summary, is_rank_zero())
            return
        if not recipe:
            raise ConfigError("give a RECIPE (name or YAML path), or --resume RUN")
        if on_bad_file is not None:
            set_ = [*(set_ or []), f"data.on_bad_file={on_bad_file_mode(on_bad_file)}"]
        out = out or Path("runs") / Path(recipe).stem
        if folds is not None:
            _echo_cv(out, cross_validate(recipe, out=out, folds=folds, data=data, smoke=smoke, overrides=set_))
            return
        summary = train_run(recipe, out=out, data=data, smoke=smoke, overrides=set_)
        _echo_summary(summary, is_rank_zero())

    @app.command()
    def ensemble(
        cv_dir: Annotated[Path, typer.Argument(help="A cross-validation directory (medattn train RECIPE --folds K).")],
        out: Annotated[Path, typer.Option(help="Bundle folder (or .zip) to write.")],
    ) -> None:
        """Save the fold models of a classification cross-validation as one bundle (mean of their
        probabilities; threshold chosen on the out-of-fold predictions)."""
        from medattn.engine.cv import ensemble_bundle

        res = ensemble_bundle(cv_dir, out)
        thr = res["threshold"] if res["threshold"] is not None else res["thresholds"]
        typer.echo(f"wrote {res['bundle']}: {res['members']} fold models, threshold(s) {thr}")

    @app.command()
    def search(
        recipe: Annotated[str, typer.Argument(help="Recipe name or YAML path (its search: section is the space).")],
        trials: Annotated[int, typer.Option(min=1, help="Number of Optuna trials.")] = 10,
        data: DataPath = None,
        out: Annotated[Path | None, typer.Option(help="Search directory (trials.csv, best_recipe.yaml).")] = None,
        smoke: Smoke = False,
        set_: SetOverrides = None,
        timeout: Annotated[float | None, typer.Option(help="Stop starting trials after this many seconds.")] = None,
        on_bad_file: OnBadFile = None,
    ) -> None:
        """Hyperparameter search with Optuna; the objective is a validation metric, never test.
        --on-bad-file overrides the recipe's data.on_bad_file in every trial."""
        from medattn.engine.search import run_search

        if on_bad_file is not None:
            set_ = [*(set_ or []), f"data.on_bad_file={on_bad_file_mode(on_bad_file)}"]
        res = run_search(recipe, trials=trials, out=out or Path("runs") / f"search-{Path(recipe).stem}",
                         data=data, smoke=smoke, overrides=set_, timeout=timeout)
        typer.echo(f"best {res['metric']} {res['best_value']:.4f} with {res['best_params']}; "
                   f"best recipe: {res['best_recipe']}")

    @app.command()
    def evaluate(
        run: Annotated[Path, typer.Argument(help="Run directory or bundle folder/zip.")],
        data: DataPath = None,
        split: SplitName = "test",
        out: Annotated[Path | None, typer.Option(help="Output folder (default RUN/eval_<split>).")] = None,
        split_csv: SplitCsv = None,
        external: Annotated[bool | None, typer.Option(
            "--external/--internal", help="External: score every item of --data with the bundle's own "
            "threshold(s), temperature and post-processing. Default: external when --data differs from the "
            "data the bundle was trained on.")] = None,
        on_bad_file: OnBadFile = None,
    ) -> None:
        """Score a run or bundle: on its own split, or on EXTERNAL data (every item, the bundle's own
        validation-chosen threshold(s); nothing is re-fitted), writing metrics.json with CIs."""
        from medattn.engine.evaluate_cli import evaluate_path
        from medattn.metrics.summary import headline_keys
        from medattn.progress import reporting

        with reporting():
            res = evaluate_path(run, data=data, split=split, out=out, split_csv=split_csv, external=external,
                                on_bad_file=on_bad_file_mode(on_bad_file))
        m = res["metrics"]
        shown = ", ".join(f"{k} {m[k]['value']:.3f}" for k in headline_keys(m))
        where = f"external ({res['n_items']} items)" if res["external"] else split
        typer.echo(f"{where}: {shown} → {res['out']}")
        if res.get("coverage"):
            typer.echo(f"prediction sets: {res['coverage']}")

    from medattn.commands.recipes import recipes_app

    app.add_typer(recipes_app, name="recipes")


def _echo_summary(summary: dict[str, Any], rank_zero: bool) -> None:
    if rank_zero and "metrics" in summary:
        from medattn.metrics.summary import headline_keys

        m = {k: v for k, v in summary["metrics"].items() if v == v}
        shown = ", ".join(f"{k} {m[k]:.3f}" for k in headline_keys(m))
        typer.echo(f"run {summary['run']}: {summary.get('evaluated_on', 'test')} {shown} "
                   f"({summary.get('seconds')} s)")
