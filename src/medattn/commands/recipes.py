"""``medattn recipes``: list the shipped recipes, print one, show the valid keys of a section."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["recipes_app"]

recipes_app = typer.Typer(
    help="Shipped recipes: list them (no sub-command), `show NAME`, `schema [SECTION]`.",
    invoke_without_command=True,
    add_completion=False,
)


def _list() -> None:
    import yaml

    from medattn.engine.config import list_recipes

    for p in list_recipes():
        doc = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        typer.echo(f"{p.stem:28s} {doc.get('description', '')}")


@recipes_app.callback()
def _default(ctx: typer.Context) -> None:
    """List the shipped recipes (name and description)."""
    if ctx.invoked_subcommand is None:
        _list()


@recipes_app.command("list")
def list_() -> None:
    """List the shipped recipes (name and description)."""
    _list()


@recipes_app.command()
def show(name: Annotated[str, typer.Argument(help="Recipe name (see `medattn recipes`) or YAML path.")]) -> None:
    """Print a recipe's YAML (copy it, edit it, pass the file to `medattn train`)."""
    from medattn.engine.config import find_recipe

    typer.echo(find_recipe(name).read_text(encoding="utf-8"), nl=False)


@recipes_app.command()
def schema(
    section: Annotated[str | None, typer.Argument(
        help="recipe, task, data, model, optimizer, scheduler, loss, trainer, evaluation or search; "
             "default: all.")] = None,
) -> None:
    """Valid keys of each recipe section: type, default and meaning."""
    from medattn.engine.recipe_schema import format_schema, recipe_schema

    typer.echo(format_schema(recipe_schema(section)))
