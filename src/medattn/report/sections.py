"""HTML bodies of evaluation sections: metrics with CIs, per-class tables, paired comparisons."""

from __future__ import annotations

from collections.abc import Mapping

from medattn.report.html import table_html

__all__ = ["metrics_ci_table", "per_class_table", "comparison_table"]


def _f(v: object, digits: int = 3) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int):
        return str(v)
    return "n/a" if v != v else f"{v:.{digits}f}"


def metrics_ci_table(summary: Mapping[str, Mapping[str, float]], level: int = 95) -> str:
    """Table of ``{metric: {"value", "ci_low", "ci_high"}}`` (e.g. :func:`binary_summary`'s output)."""
    rows = [[name, _f(m.get("value")), f"{_f(m.get('ci_low'))} – {_f(m.get('ci_high'))}"]
            for name, m in summary.items()]
    return table_html(["metric", "value", f"{level}% CI"], rows)


def per_class_table(per_class: Mapping[str, Mapping[str, object]], columns: list[str] | None = None) -> str:
    """One row per class of ``{class: {metric: value}}`` (e.g. :func:`multiclass_per_class`)."""
    if not per_class:
        return "<p class=note>no classes</p>"
    cols = columns or list(next(iter(per_class.values())).keys())
    return table_html(["class", *cols], [[name, *(_f(m.get(c)) for c in cols)] for name, m in per_class.items()])


def comparison_table(result: Mapping[str, object]) -> str:
    """Table of a paired comparison (:func:`medattn.metrics.compare.compare_prediction_tables`)."""
    level = round(100 * (1 - float(result.get("alpha", 0.05))))  # type: ignore[arg-type]
    metrics: Mapping[str, Mapping[str, float]] = result["metrics"]  # type: ignore[assignment]
    rows = [[name, _f(m["value_a"]), _f(m["value_b"]), _f(m["diff"]),
             f"{_f(m['ci_low'])} – {_f(m['ci_high'])}", _f(m["p_value"], 4)] for name, m in metrics.items()]
    return table_html(["metric", "A", "B", "B − A", f"{level}% CI of B − A", "p"], rows)
