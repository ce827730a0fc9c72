"""The valid keys of each recipe section, derived from the pydantic models of
:mod:`medattn.engine.config` (``medattn recipes schema [SECTION]``)."""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from medattn.engine.config import Recipe
from medattn.errors import ConfigError

__all__ = ["SchemaRow", "recipe_schema", "format_schema", "schema_sections"]

_TOP = "recipe"  # pseudo-section of the top-level scalar keys (name, description, smoke)


@dataclass(frozen=True)
class SchemaRow:
    """One valid recipe key."""

    key: str
    """Dotted path, e.g. ``trainer.max_epochs``."""
    type: str
    default: str
    doc: str


def _type_name(ann: Any) -> str:
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is Literal:
        return "|".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if ann is type(None):
        return "null"
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else _type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return getattr(ann, "__name__", str(ann))


def _constraints(metadata: list[Any]) -> str:
    parts = []
    for m in metadata:
        for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            val = getattr(m, attr, None)
            if val is not None:
                parts.append(f"{sym}{val}")
    return f" ({', '.join(parts)})" if parts else ""


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.default
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        return "(section)"
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return repr(value) if isinstance(value, str) else str(value)


def _is_section(ann: Any) -> bool:
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def _rows(model: type[BaseModel], prefix: str) -> list[SchemaRow]:
    out: list[SchemaRow] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        ann = field.annotation
        doc = " ".join((field.description or "").split())
        if _is_section(ann):
            out.extend(_rows(ann, key))
            continue
        out.append(SchemaRow(key, _type_name(ann) + _constraints(field.metadata), _default(field), doc))
    return out


def schema_sections() -> list[str]:
    """Section names of a recipe (``recipe`` = the top-level keys), in file order."""
    names = [n for n, f in Recipe.model_fields.items() if _is_section(f.annotation)]
    return [_TOP, *names]


def recipe_schema(section: str | None = None) -> list[SchemaRow]:
    """Every valid key of ``section`` (all sections when ``None``).

    Raises:
        ConfigError: ``section`` is not a recipe section.
    """
    sections = schema_sections()
    if section is None:
        return [row for s in sections for row in recipe_schema(s)]
    if section not in sections:
        raise ConfigError(f"unknown recipe section '{section}'; one of: {', '.join(sections)}")
    if section == _TOP:
        top = [n for n, f in Recipe.model_fields.items() if not _is_section(f.annotation)]
        return [r for r in _rows(Recipe, "") if r.key in top]
    return _rows(Recipe.model_fields[section].annotation, section)


def format_schema(rows: list[SchemaRow]) -> str:
    """Plain-text table: key, type, default, then the doc on the same line when it fits."""
    if not rows:
        return ""
    wk = max(len(r.key) for r in rows)
    wt = min(max(len(r.type) for r in rows), 48)
    wd = min(max(len(r.default) for r in rows), 24)
    lines = [f"{'key':{wk}}  {'type':{wt}}  {'default':{wd}}  doc"]
    for r in rows:
        lines.append(f"{r.key:{wk}}  {r.type:{wt}}  {r.default:{wd}}  {r.doc}".rstrip())
    return "\n".join(lines)
