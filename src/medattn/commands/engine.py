"""CLI verbs of the engine area: ``train``, ``search``, ``evaluate``, ``recipes``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]

_SET_HELP = "Override a recipe field, e.g. --set optimizer.lr=1e-3 (repeatable)."


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""

    @app.command()
    def train(
        recipe: Annotated[str, typer.Argument(help="Recipe name (see `medattn recipes`) or YAML path.")] = "",
        data: Annotated[Path | None, typer.Option(help="Data folder (or CSV manifest); default: the recipe's data.root.")] = None,
        out: Annotated[Path | None, typer.Option(help="Run directory, e.g. runs/NAME.")] = None,
        smoke: Annotated[bool, typer.Option(help="Shrink the recipe to seconds; synthetic data when --data is omitted.")] = False,
        set_: Annotated[list[str] | None, typer.Option("--set", help=_SET_HELP)] = None,
        resume: Annotated[Path | None, typer.Option(help="Continue the interrupted run in this directory.")] = None,
        folds: Annotated[int | None, typer.Option(
            help="Grouped, stratified K-fold cross-validation over train + valid (the test split stays untouched): "
                 "OUT/fold_k runs, cv_summary.json/csv, out-of-fold test_predictions.csv.")] = None,
        on_bad_file: Annotated[str | None, typer.Option(
            "--on-bad-file", help="Unreadable/truncated/empty images: 'error' (stop, naming the file) or "
            "'skip' (leave them out, listed in RUN/bad_files.txt). Default: the recipe's data.on_bad_file.")] = None,
    ) -> None:
        """Train a recipe into a run directory (metrics with CIs, bundle, report.html)."""
        from medattn.engine.runner import is_rank_zero, train_run
        from medattn.errors import ConfigError

        if resume is None and not recipe:
            raise ConfigError("give a RECIPE (name or YAML path), or --resume RUN")
        if on_bad_file is not None:
            if on_bad_file not in ("error", "skip"):
                raise ConfigError(f"--on-bad-file must be 'error' or 'skip', got '{on_bad_file}'")
            if resume is not None:
                raise ConfigError("--on-bad-file applies to new runs; a resumed run keeps the data.on_bad_file "
                                  f"of {resume}/recipe.yaml")
            set_ = [*(set_ or []), f"data.on_bad_file={on_bad_file}"]
        if resume is None and out is None:
            out = Path("runs") / Path(recipe).stem
        if folds is not None:
            if resume is not None:
                raise ConfigError("--folds starts a new cross-validation; --resume continues a single run")
            from medattn.engine.cv import cross_validate

            cv = cross_validate(recipe, out=out, folds=folds, data=data, smoke=smoke, overrides=set_)
            typer.echo(f"cross-validation {out}: {cv['folds']} folds, {cv['items']} items, {cv['groups']} groups "
                       f"({cv['seconds']} s)")
            from medattn.metrics.summary import headline_keys

            for name in headline_keys(cv["metrics"]):
                m = cv["metrics"][name]
                typer.echo(f"  {name:<20} {m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]  ({m['interval']})")
            return
        summary = train_run(recipe, out=resume or out, data=data, smoke=smoke, overrides=set_,
                            resume=resume is not None)
        if is_rank_zero() and "metrics" in summary:
            from medattn.metrics.summary import headline_keys

            m = {k: v for k, v in summary["metrics"].items() if v == v}
            shown = ", ".join(f"{k} {m[k]:.3f}" for k in headline_keys(m))
            typer.echo(f"run {summary['run']}: {summary.get('evaluated_on', 'test')} {shown} "
                       f"({summary.get('seconds')} s)")

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
        trials: Annotated[int, typer.Option(help="Number of Optuna trials.")] = 10,
        data: Annotated[Path | None, typer.Option(help="Data folder; default: the recipe's data.root.")] = None,
        out: Annotated[Path | None, typer.Option(help="Search directory (trials.csv, best_recipe.yaml).")] = None,
        smoke: Annotated[bool, typer.Option(help="Tiny trials on synthetic data.")] = False,
        set_: Annotated[list[str] | None, typer.Option("--set", help=_SET_HELP)] = None,
        timeout: Annotated[float | None, typer.Option(help="Stop starting trials after this many seconds.")] = None,
    ) -> None:
        """Hyperparameter search with Optuna; the objective is a validation metric, never test."""
        from medattn.engine.search import run_search
        from medattn.errors import ConfigError

        if trials < 1:
            raise ConfigError(f"--trials must be >= 1, got {trials}")
        res = run_search(recipe, trials=trials, out=out or Path("runs") / f"search-{Path(recipe).stem}",
                         data=data, smoke=smoke, overrides=set_, timeout=timeout)
        typer.echo(f"best {res['metric']} {res['best_value']:.4f} with {res['best_params']}; "
                   f"best recipe: {res['best_recipe']}")

    @app.command()
    def evaluate(
        run: Annotated[Path, typer.Argument(help="Run directory or bundle folder/zip.")],
        data: Annotated[Path | None, typer.Option(help="Data folder; default: the data the run trained on.")] = None,
        split: Annotated[str, typer.Option(help="Split to score: test, valid or train.")] = "test",
        out: Annotated[Path | None, typer.Option(help="Output folder (default RUN/eval_<split>).")] = None,
        split_csv: Annotated[Path | None, typer.Option(
            help="split.csv (file,split,group,label) fixing train/valid/test, e.g. a published split.")] = None,
        external: Annotated[bool | None, typer.Option(
            "--external/--internal", help="External: score every item of --data with the bundle's own "
            "threshold(s), temperature and post-processing. Default: external when --data differs from the "
            "data the bundle was trained on.")] = None,
    ) -> None:
        """Score a run or bundle: on its own split, or on EXTERNAL data (every item, the bundle's own
        validation-chosen threshold(s); nothing is re-fitted), writing metrics.json with CIs."""
        from medattn.engine.evaluate_cli import evaluate_path
        from medattn.metrics.summary import headline_keys
        from medattn.progress import reporting

        with reporting():
            res = evaluate_path(run, data=data, split=split, out=out, split_csv=split_csv, external=external)
        m = res["metrics"]
        shown = ", ".join(f"{k} {m[k]['value']:.3f}" for k in headline_keys(m))
        where = f"external ({res['n_items']} items)" if res["external"] else split
        typer.echo(f"{where}: {shown} → {res['out']}")

    from medattn.commands.recipes import recipes_app

    app.add_typer(recipes_app, name="recipes")
