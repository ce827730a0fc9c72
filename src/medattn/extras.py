"""Optional extras: one check and one message for every verb that needs one.

``pip install medattn`` leaves out the heavy optional parts (``serve``, ``search``, ``export``,
``slide``); a verb that needs one calls :func:`require_extra` before doing anything, and the user
reads one line, e.g. ``medattn serve needs the 'serve' extra (uvicorn is not installed): pip install
'medattn[serve]'`` (exit 2), never a ``ModuleNotFoundError`` traceback.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable

from medattn.errors import MissingExtraError

__all__ = ["require_extra", "missing_modules"]


def _present(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module stub without a spec
        return False


def missing_modules(modules: Iterable[str | tuple[str, ...]]) -> list[str]:
    """Import names of ``modules`` that cannot be imported; a tuple is alternatives (one suffices)."""
    out = []
    for m in modules:
        alts = (m,) if isinstance(m, str) else tuple(m)
        if not any(_present(a) for a in alts):
            out.append(" or ".join(alts))
    return out


def require_extra(extra: str, modules: Iterable[str | tuple[str, ...]], who: str) -> None:
    """Raise one line naming the extra and its pip command when a module of it is missing.

    Args:
        extra: the ``[project.optional-dependencies]`` name, e.g. ``"serve"``.
        modules: import names the verb needs; a tuple lists alternatives.
        who: the verb as the user typed it, e.g. ``"medattn serve"``.

    Raises:
        MissingExtraError: a module is missing.
    """
    missing = missing_modules(modules)
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise MissingExtraError(f"{who} needs the '{extra}' extra ({', '.join(missing)} {verb} not installed): "
                                f"pip install 'medattn[{extra}]'")
