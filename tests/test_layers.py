"""The core's layers point one way: every import of ``percviz/`` — at module level and inside
functions, not the ``if TYPE_CHECKING:`` ones, which never run — goes from a unit to one in a lower
layer (or within its own unit), so there is no import cycle between units and the core never
imports serving, workflows or the command line from below."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "percviz"

#: Lowest first. A unit is a subpackage of ``percviz`` or a top-level module; a unit may import
#: units of its own layer's predecessors only (and itself). Within one layer units do not import
#: each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),
    ("jsonsafe", "progress", "device", "limits", "textio"),  # plain helpers and the settings
    ("images",),
    ("models",),  # classifiers, regressors, own models, the zoo
    ("analysis",),  # metrics, views, GradCAM++, replay of a result
    ("attacks",),  # the registry, the templates, every method and its solvers
    ("evaluation",),  # plans, rows, statistics over image sets
    ("recipes",),
    ("pipeline", "transfer"),
    ("figures", "regression_eval"),
    ("serving",),  # the compute queue, memory housekeeping, Ray
    ("workflows",),  # what the pages and the CLI run
    ("cli",),  # the command line: one module per command, shared arguments in cli/args.py
    ("__main__",),
)


def _unit(module: str) -> str:
    """``percviz.attacks.base`` → ``attacks``; ``percviz.cli`` → ``cli``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(tree: ast.AST) -> list[tuple[str, int]]:
    """Every ``percviz.*`` module a file imports when it runs (``TYPE_CHECKING`` blocks skipped)."""
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((a.name, node.lineno) for a in node.names if a.name.startswith("percviz"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "percviz":
                found.extend((f"percviz.{a.name}", node.lineno) for a in node.names)
            elif node.module.startswith("percviz."):
                found.append((node.module, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _edges() -> dict[tuple[str, str], list[str]]:
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in ROOT.rglob("*.py"):
        source = _unit(_module(path))
        for target, line in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            unit = _unit(target)
            if unit not in (source, "__init__"):
                edges[(source, unit)].append(f"{path.relative_to(ROOT.parent)}:{line} imports {target}")
    return edges


def test_every_unit_has_a_layer() -> None:
    units = {_unit(_module(p)) for p in ROOT.rglob("*.py")} - {"__init__"}
    placed = {u for layer in LAYERS for u in layer}
    assert units <= placed, f"units without a layer: {sorted(units - placed)}"


def test_imports_go_down_the_layers_only() -> None:
    rank = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}
    upward = [
        f"{src} (layer {rank[src]}) → {dst} (layer {rank[dst]}): {where[0]}"
        for (src, dst), where in sorted(_edges().items())
        if rank.get(dst, -1) >= rank.get(src, -1)
    ]
    assert upward == [], "imports that point up or sideways:\n" + "\n".join(upward)


def test_no_import_cycle_between_units() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for src, dst in _edges():
        graph[src].add(dst)
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def walk(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                walk(nxt, [*trail, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            walk(start, [start])
    assert cycles == [], f"import cycles: {cycles}"


def test_no_core_module_reads_hosted_mode_itself():
    """Hosted mode is one setting read in ``percviz/limits.py``; everything else takes ``Limits``
    (as an argument, or ``current_limits()`` as the default of one)."""
    readers = [
        str(path.relative_to(ROOT.parent))
        for path in ROOT.rglob("*.py")
        if path.name != "limits.py" and "hosted_mode" in path.read_text(encoding="utf-8")
    ]
    assert readers == []


def test_models_take_their_limits_as_an_argument(tmp_path):
    import pytest

    from percviz.errors import ModelFileError, ModelUnavailableError
    from percviz.limits import HOSTED
    from percviz.models import load_model
    from percviz.models.regression import load_regressor

    with pytest.raises(ModelFileError, match="Own models are turned off on this server"):
        load_model(f"file:{tmp_path / 'net.pt'}", "cpu", HOSTED)
    with pytest.raises(ModelUnavailableError, match="Own models are disabled in hosted mode"):
        load_regressor(f"file:{tmp_path / 'net.pt'}", "cpu", None, HOSTED)
