"""The house of ``src/medattn``: no import circle, and no import from a lower layer to a higher one.

Every import statement counts — top-level, inside functions and under ``if TYPE_CHECKING`` — since a
lazy import is still a dependency, and so does a string that is exactly a module's name
(``importlib.import_module("medattn.x")``, lazy-attribute tables, package-data lookups).
:data:`LAYERS` is the order, low to high; a module may import its own layer and the layers below
it. A new top-level module or package must be placed here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS: tuple[tuple[str, ...], ...] = (
    # base: no medattn imports beyond each other (errors, atomic files, optional extras, threads,
    # progress lines, bundle.json field checks, the package version, shipped recipe files)
    ("medattn", "errors", "io", "extras", "runtime", "progress", "bundle_meta", "recipes"),
    ("decode",),  # the one image decoder
    ("attention",),  # attention blocks
    ("models",),  # architectures, weights, output reading, the chained segment→classify module
    ("data",),  # formats, splits, audit, transforms (the one preparation), synthetic data
    ("metrics",),
    ("report", "overview"),  # HTML/plots of numbers; the dataset overview page
    # tiling, TTA, instances, predictions over files and slides (given a predictor), and the trust
    # checks every answer carries (input contract, scale, OOD, conformal sets, uncertainty, card
    # content): one layer, since tiled answers and slides summarise per-tile trust and uncertainty
    # uses the TTA views (module-level circles are still refused)
    ("infer", "trust"),
    ("bundle",),  # the file format (only writer of bundle.json / pipeline.json) and the Predictor
    ("explain",),  # CAMs and attention maps of a Predictor
    ("engine",),  # training, evaluation, runs, trust fitting
    ("pipelines",),  # segment-then-classify: Python API, paired evaluation
    ("serve", "export", "demo"),  # REST + dashboard, ONNX, the demo
    ("commands",),  # the CLI verbs
    ("cli",),
)
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def module_name(path: Path, src: Path) -> str:
    """``medattn.bundle.format`` for ``src/medattn/bundle/format.py`` (a package is its ``__init__``)."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(src: Path, package: str = "medattn") -> tuple[nx.DiGraph, dict[tuple[str, str], str]]:
    """Module import graph of ``src/package`` and, per edge, where it is (``file:line``).

    ``from X import Y`` is an edge to ``X.Y`` when that is a module, else to ``X``; relative imports
    are resolved; a string constant naming a module is an edge to it; edges to modules outside the
    package are dropped.
    """
    files = {module_name(p, src): p for p in sorted((src / package).rglob("*.py"))}
    graph, where = nx.DiGraph(), {}
    graph.add_nodes_from(files)
    for mod, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        here = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in files:
                targets = [node.value]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = here[: len(here) - (node.level - 1)]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            for t in targets:
                while t not in files and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t in files and t != mod:
                    graph.add_edge(mod, t)
                    where.setdefault((mod, t), f"{path.relative_to(src)}:{node.lineno}")
    return graph, where


def layer_of(mod: str) -> str:
    """The :data:`LAYERS` entry of a module: its top-level name under ``medattn``."""
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def circles(graph: nx.DiGraph) -> list[list[str]]:
    """Import circles: strongly connected components of more than one module, sorted."""
    return sorted(sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1)


def upward_imports(graph: nx.DiGraph, where: dict[tuple[str, str], str]) -> list[str]:
    """``file:line: a (layer) imports b (higher layer)`` for every import against :data:`LAYERS`."""
    out = []
    for a, b in graph.edges:
        la, lb = layer_of(a), layer_of(b)
        if RANK[lb] > RANK[la]:
            out.append(f"{where[a, b]}: {a} ({la}) imports {b} ({lb}, a higher layer)")
    return sorted(out)


@pytest.fixture(scope="module")
def medattn_graph() -> tuple[nx.DiGraph, dict[tuple[str, str], str]]:
    return import_graph(SRC)


def test_every_top_level_module_has_a_layer(medattn_graph) -> None:
    graph, _ = medattn_graph
    unplaced = sorted({layer_of(m) for m in graph.nodes} - set(RANK))
    assert not unplaced, f"place these in LAYERS of {__file__}: {unplaced}"


def test_no_import_circle(medattn_graph) -> None:
    graph, where = medattn_graph
    found = circles(graph)
    lines = [" <-> ".join(c) + "  [" + ", ".join(where[a, b] for a, b in graph.subgraph(c).edges) + "]"
             for c in found]
    assert not found, "import circles:\n" + "\n".join(lines)


def test_no_import_from_a_lower_layer_to_a_higher_one(medattn_graph) -> None:
    graph, where = medattn_graph
    up = upward_imports(graph, where)
    assert not up, f"{len(up)} upward imports:\n" + "\n".join(up)


def test_the_checker_finds_circles_lazy_and_relative_upward_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "medattn"
    for rel, text in {
        "__init__.py": "",
        "errors.py": "",
        "models/__init__.py": "from medattn.models.a import f\n",
        "models/a.py": "def f():\n    from medattn.bundle import g\n",  # lazy, upward
        "bundle/__init__.py": "from .b import g\n",  # relative, to its own module
        "bundle/b.py": "from ..models import a\nimport medattn.errors\ndef g(): ...\n",
        "trust/c.py": "from medattn.trust import d\nimport importlib\nimportlib.import_module('medattn.cli')\n",
        "cli.py": "",
        "trust/d.py": "from . import c\n",  # circle c <-> d through relative imports
    }.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    graph, where = import_graph(tmp_path)
    assert set(graph.edges) == {
        ("medattn.models", "medattn.models.a"), ("medattn.models.a", "medattn.bundle"),
        ("medattn.bundle", "medattn.bundle.b"), ("medattn.bundle.b", "medattn.models.a"),
        ("medattn.bundle.b", "medattn.errors"), ("medattn.trust.c", "medattn.trust.d"),
        ("medattn.trust.d", "medattn.trust.c"), ("medattn.trust.c", "medattn.cli"),
    }
    assert circles(graph) == [["medattn.bundle", "medattn.bundle.b", "medattn.models.a"],
                              ["medattn.trust.c", "medattn.trust.d"]]
    assert upward_imports(graph, where) == [
        "medattn/models/a.py:2: medattn.models.a (models) imports medattn.bundle (bundle, a higher layer)",
        "medattn/trust/c.py:3: medattn.trust.c (trust) imports medattn.cli (cli, a higher layer)"]
