"""Type checks of the core fields of ``bundle.json`` (a hand-edited or foreign file must fail in
one line naming the field, not with a traceback deep inside preprocessing)."""

from __future__ import annotations

from typing import Any

from medattn.errors import BundleError

__all__ = ["check_bundle_meta"]


def _is_int(v: Any) -> bool:
    """An integer (a JSON ``96.0`` counts; ``true`` does not)."""
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _fail(where: str, field: str, want: str, got: Any) -> BundleError:
    return BundleError(f"'{where}/bundle.json' field '{field}': expected {want}, got {got!r}; "
                       "re-save the bundle with medattn or correct the field")


def check_bundle_meta(meta: dict[str, Any], where: str) -> None:
    """Raise :class:`BundleError` naming the first malformed core field of ``meta``.

    Args:
        meta: the parsed ``bundle.json``.
        where: the bundle path, for the message.
    """
    arch = meta.get("architecture")
    if not isinstance(arch, dict) or not isinstance(arch.get("name"), str):
        raise _fail(where, "architecture", "a mapping with a 'name'", arch)
    if not isinstance(arch.get("kwargs", {}), dict):
        raise _fail(where, "architecture.kwargs", "a mapping", arch.get("kwargs"))
    names = meta.get("class_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise _fail(where, "class_names", "a non-empty list of names", names)
    size = meta.get("input_size")
    pair = isinstance(size, list) and len(size) == 2 and all(_is_int(s) for s in size)
    if not ((_is_int(size) and size > 0) or (pair and min(size) > 0)):
        raise _fail(where, "input_size", "a positive integer or [height, width]", size)
    chans = meta.get("in_chans")
    if not _is_int(chans) or not 1 <= chans <= 4:
        raise _fail(where, "in_chans", "an integer from 1 to 4", chans)
    for key in ("mean", "std"):
        val = meta.get(key)
        if not isinstance(val, list) or not val or not all(_is_num(v) for v in val):
            raise _fail(where, key, "a list of numbers (one per channel)", val)
    if "threshold" in meta and meta["threshold"] is not None and not _is_num(meta["threshold"]):
        raise _fail(where, "threshold", "a number", meta["threshold"])
