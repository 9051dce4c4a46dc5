"""The package's layers, read from the source with ``ast``: no upward import, no import cycle.

Every ``import`` counts, at module level and inside functions (a function-level import is a dependency that
is merely paid for later). Modules are placed in ``LAYERS`` (lowest first) by their longest matching prefix;
a module may import its own layer or lower ones, and the import graph must have no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: Lowest first. A module belongs to the layer of its longest matching prefix.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("stemforge", "stemforge.errors", "stemforge.stems"),
    ("stemforge.extras", "stemforge.dsp", "stemforge.audio", "stemforge.stem_folder"),
    ("stemforge.layout", "stemforge.metrics", "stemforge.data", "stemforge.daw", "stemforge.remix"),
    ("stemforge.models",),  # base, registry, the built-in families
    ("stemforge.models.compat",),  # published architectures and their checkpoint formats
    ("stemforge.checkpoint", "stemforge.engine", "stemforge.lite", "stemforge.lite_graph"),  # lite*: torch-free
    ("stemforge.hub", "stemforge.export", "stemforge.train"),
    ("stemforge.separate", "stemforge.stemfile", "stemforge.stream"),
    ("stemforge.evaluate", "stemforge.live"),
    ("stemforge.report", "stemforge.web", "stemforge.batch"),
    ("stemforge.commands",),
    ("stemforge.cli", "stemforge.__main__"),
)


def module_name(path: Path, root: Path = SRC) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, modules: set[str], package: str = "stemforge") -> set[str]:
    """Every ``package`` module ``source`` imports, at any depth (module level and inside functions).

    ``from a import b`` counts as importing ``a.b`` when that is a module, else ``a``.
    """
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in modules else node.module)
    return {m for m in found if m == package or m.startswith(package + ".")}


def import_graph(root: Path = SRC) -> dict[str, set[str]]:
    files = sorted((root / "stemforge").rglob("*.py"))
    modules = {module_name(f, root) for f in files}
    return {module_name(f, root): imports_of(f.read_text(), modules) - {module_name(f, root)} for f in files}


def layer_of(module: str, layers: tuple[tuple[str, ...], ...] = LAYERS) -> int:
    best = max(((len(prefix), level) for level, group in enumerate(layers) for prefix in group
                if module == prefix or module.startswith(prefix + ".")), default=None)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py")
    return best[1]


def upward_imports(graph: dict[str, set[str]], layers: tuple[tuple[str, ...], ...] = LAYERS) -> list[str]:
    return sorted(f"{m} (layer {layer_of(m, layers)}) imports {d} (layer {layer_of(d, layers)})"
                  for m, deps in graph.items() for d in deps if layer_of(d, layers) > layer_of(m, layers))


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state:
                cycle = visit(dep)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_upward_import() -> None:
    assert upward_imports(import_graph()) == []


def test_no_import_cycle() -> None:
    assert find_cycle(import_graph()) is None


def test_every_module_has_a_layer() -> None:
    for module in import_graph():
        layer_of(module)


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    """A function-level upward import and a two-module cycle, in a throw-away package, are both reported."""
    pkg = tmp_path / "stemforge"
    (pkg / "models").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "errors.py").write_text("")
    (pkg / "models" / "__init__.py").write_text("")
    (pkg / "models" / "loading.py").write_text("def f():\n    from stemforge import zoo\n")
    (pkg / "zoo.py").write_text("from stemforge.models.loading import f\n")
    graph = import_graph(tmp_path)
    layers = (("stemforge",), ("stemforge.models",), ("stemforge.zoo",))
    assert graph["stemforge.models.loading"] == {"stemforge.zoo"}  # the function-level import is seen
    assert upward_imports(graph, layers) == ["stemforge.models.loading (layer 1) imports stemforge.zoo (layer 2)"]
    assert find_cycle(graph) == ["stemforge.models.loading", "stemforge.zoo", "stemforge.models.loading"]


@pytest.mark.parametrize("module", ["stemforge", "stemforge.hub", "stemforge.hub.catalogue", "stemforge.hub.cache",
                                    "stemforge.commands.models", "stemforge.cli", "stemforge.stemfile",
                                    "stemforge.remix", "stemforge.lite", "stemforge.lite_graph",
                                    "stemforge.separate"])
def test_light_modules_import_no_torch(module: str) -> None:
    """The package, the hub, its catalogue and cache and the CLI layer load without torch (``stemforge --help``)."""
    import subprocess
    import sys

    code = f"import sys, {module}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
