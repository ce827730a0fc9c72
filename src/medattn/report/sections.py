"""HTML bodies of evaluation sections: metrics with CIs, per-class tables, paired comparisons."""

from __future__ import annotations

from collections.abc import Mapping

from medattn.report.html import table_html

__all__ = ["metrics_ci_table", "per_class_table", "comparison_table", "fmt_value", "COUNT_COLUMNS"]

#: Columns that hold counts: shown as integers even when read back from a CSV as floats.
COUNT_COLUMNS = frozenset({"support", "n", "count", "items", "positives", "negatives", "tp", "fp", "fn", "tn",
                           "n_items", "n_pos", "n_neg", "groups", "patients", "images", "instances"})
_MISSING = "n/a"


def fmt_value(v: object, digits: int = 3, column: str = "") -> str:
    """One table cell: ``None``/NaN → ``n/a``, counts as integers, other numbers with ``digits``."""
    if v is None:
        return _MISSING
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if v != v:
        return _MISSING
    if column.lower() in COUNT_COLUMNS and float(v).is_integer():
        return str(int(v))
    return f"{v:.{digits}f}"


def _ci(low: object, high: object, digits: int = 3) -> str:
    lo, hi = fmt_value(low, digits), fmt_value(high, digits)
    return _MISSING if _MISSING in (lo, hi) else f"{lo} – {hi}"


def metrics_ci_table(summary: Mapping[str, Mapping[str, float]], level: int = 95) -> str:
    """Table of ``{metric: {"value", "ci_low", "ci_high"}}`` (e.g. :func:`binary_summary`'s output).

    A missing or undefined interval (``None``/NaN bounds, e.g. a finding absent from the test
    split) reads ``n/a``, never ``None – None``.
    """
    rows = [[name, fmt_value(m.get("value")), _ci(m.get("ci_low"), m.get("ci_high"))] for name, m in summary.items()]
    return table_html(["metric", "value", f"{level}% CI"], rows)


def per_class_table(per_class: Mapping[str, Mapping[str, object]], columns: list[str] | None = None) -> str:
    """One row per class of ``{class: {metric: value}}`` (e.g. :func:`multiclass_per_class`);
    count columns (:data:`COUNT_COLUMNS`, e.g. ``support``) are shown as integers."""
    if not per_class:
        return "<p class=note>no classes</p>"
    cols = columns or list(next(iter(per_class.values())).keys())
    return table_html(["class", *cols],
                      [[name, *(fmt_value(m.get(c), column=c) for c in cols)] for name, m in per_class.items()])


def comparison_table(result: Mapping[str, object]) -> str:
    """Table of a paired comparison (:func:`medattn.metrics.compare.compare_prediction_tables`)."""
    level = round(100 * (1 - float(result.get("alpha", 0.05))))  # type: ignore[arg-type]
    metrics: Mapping[str, Mapping[str, float]] = result["metrics"]  # type: ignore[assignment]
    rows = [[name, fmt_value(m["value_a"]), fmt_value(m["value_b"]), fmt_value(m["diff"]),
             _ci(m["ci_low"], m["ci_high"]), fmt_value(m["p_value"], 4)] for name, m in metrics.items()]
    return table_html(["metric", "A", "B", "B − A", f"{level}% CI of B − A", "p"], rows)
