"""The layers of ARCHITECTURE.md, checked on the source: imports only point down, no service
imports another, and no import cycle between modules.

Every module of the `logpipe` package is parsed with `ast`, never imported, so a module with
side effects (or one that fails to import) is still checked. Imports inside functions count:
they run sooner or later, and a cycle through them is still a cycle.
"""

from __future__ import annotations

import ast
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "services" / "logpipe"

CORE = {"core"}
STORES = {"stores"}
DOMAIN = {"patterns", "ai", "schemas", "tokens"}
SERVICES = {"generator", "ingest", "embedder", "vectorizer", "analyzer", "gateway"}
# Entry points sit on top of everything: they start services and may import any of them.
ENTRY_POINTS = {"__init__", "cli", "dev", "runner"}

# What each top-level part of `logpipe` may import (its own modules always included).
# A new package is one more line here; one missing from the table fails the test.
MAY_IMPORT: dict[str, set[str]] = {
    "core": CORE,
    "stores": CORE | STORES,
    **{domain: CORE | STORES | DOMAIN for domain in DOMAIN},
    **{service: CORE | STORES | DOMAIN | {service} for service in SERVICES},
    "operator": CORE | STORES | {"schemas", "tokens", "operator"},
}


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    target: str  # the logpipe module it resolves to
    file: str  # relative to the package directory
    line: int

    def where(self) -> str:
        return f"{self.file}:{self.line}"


def module_names(root: Path) -> dict[str, Path]:
    """Dotted name -> file of every module under `root` (a package directory)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    # A package's own __init__ is its `.`; a module's `.` is the package around it.
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str, path: Path, modules: dict[str, Path], root: Path) -> list[Import]:
    """The logpipe modules `name` imports, anywhere in its body."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    top = name.split(".")[0]
    found = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, path.name == "__init__.py", node)
            # `from pkg import sub` imports the module pkg.sub when there is one.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        for target in targets:
            if target != top and not target.startswith(top + "."):
                continue
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]  # `import a.b.c` where c is a name, not a module
            if target != name:
                found.append(Import(name, target, str(path.relative_to(root)), node.lineno))
    return found


def part_of(module: str) -> str:
    """The top-level part of `logpipe` a module belongs to: `logpipe.core.record` -> `core`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_violations(edges: list[Import]) -> list[str]:
    problems = []
    for edge in edges:
        source, target = part_of(edge.importer), part_of(edge.target)
        if source in ENTRY_POINTS:
            continue
        if source not in MAY_IMPORT:
            problems.append(f"{edge.importer}: `{source}` is in no layer: add it to MAY_IMPORT in tests/test_layers.py")
            continue
        allowed = MAY_IMPORT[source]
        if target not in allowed and target != "__init__":
            problems.append(f"{edge.where()}: {edge.importer} imports {edge.target}: "
                            f"{source} may import only {', '.join(sorted(allowed))}")
    return sorted(set(problems))


def import_cycles(edges: list[Import]) -> list[str]:
    """One shortest cycle per strongly connected component, with where each import is."""
    graph: dict[str, dict[str, Import]] = {}
    for edge in edges:
        graph.setdefault(edge.importer, {}).setdefault(edge.target, edge)
    cycles = []
    for component in _components(graph):
        start = min(component)
        path = _shortest_cycle(graph, component, start)
        hops = [graph[a][b] for a, b in zip(path, path[1:])]
        cycles.append(" -> ".join([start] + [f"{hop.target} ({hop.where()})" for hop in hops]))
    return cycles


def _components(graph: dict[str, dict[str, Import]]) -> list[set[str]]:
    """Tarjan's strongly connected components of more than one module (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, {}))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)
    return sorted(components, key=min)


def _shortest_cycle(graph: dict[str, dict[str, Import]], component: set[str], start: str) -> list[str]:
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph.get(node, {})):
            if child not in component:
                continue
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [start] + path[::-1][1:] + [start] if len(path) > 1 else [start, node, start]
            if child not in came_from:
                came_from[child] = node
                queue.append(child)
    raise AssertionError(f"no cycle through {start} in {sorted(component)}")


def all_imports(root: Path) -> list[Import]:
    modules = module_names(root)
    return [edge for name, path in modules.items() for edge in imports_of(name, path, modules, root)]


def test_imports_point_down_the_layers():
    edges = all_imports(PACKAGE_ROOT)
    assert edges, f"no imports found under {PACKAGE_ROOT}: is the path right?"
    problems = layer_violations(edges)
    assert not problems, ("imports against the layers of ARCHITECTURE.md (cli -> services -> domain -> stores -> "
                          "core; no service imports another):\n  " + "\n  ".join(problems))


def test_no_import_cycles():
    cycles = import_cycles(all_imports(PACKAGE_ROOT))
    assert not cycles, "import cycles (module-level and function-level imports):\n  " + "\n  ".join(cycles)


# --- the checker itself, on a package made up for the purpose ---------------------------------

def write_package(root: Path, files: dict[str, str]) -> Path:
    package = root / "logpipe"
    for name, text in {"__init__.py": "", **files}.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(package).parents:
            (package / parent / "__init__.py").touch()
        path.write_text(text)
    return package


def test_checker_reports_layer_violations_with_file_and_line(tmp_path):
    package = write_package(tmp_path, {
        "core/record.py": "import json\n\ndef f():\n    from logpipe.patterns.miner import mine\n",
        "patterns/miner.py": "from logpipe.core import record\n",
        "ingest/handlers.py": "from ..gateway.query import run\nfrom logpipe.patterns import miner\n",
        "gateway/query.py": "",
        "stores/sql.py": "from logpipe import analyzer\n",
        "analyzer/__init__.py": "",
        "operator/handlers.py": "from logpipe.ai import llm\nfrom logpipe.schemas import create\n",
        "ai/llm.py": "",
        "schemas.py": "",
        "cli.py": "from logpipe.ingest import handlers\nfrom logpipe.gateway import query\n",
        "newthing/x.py": "from logpipe.core import record\n",
    })
    problems = layer_violations(all_imports(package))
    assert problems == [
        "core/record.py:4: logpipe.core.record imports logpipe.patterns.miner: core may import only core",
        "ingest/handlers.py:1: logpipe.ingest.handlers imports logpipe.gateway.query: "
        "ingest may import only ai, core, ingest, patterns, schemas, stores, tokens",
        "logpipe.newthing.x: `newthing` is in no layer: add it to MAY_IMPORT in tests/test_layers.py",
        "operator/handlers.py:1: logpipe.operator.handlers imports logpipe.ai.llm: "
        "operator may import only core, operator, schemas, stores, tokens",
        "stores/sql.py:1: logpipe.stores.sql imports logpipe.analyzer: stores may import only core, stores",
    ]


def test_checker_reports_cycles_through_function_level_imports(tmp_path):
    package = write_package(tmp_path, {
        "cli.py": "from logpipe import dev\n",
        "dev.py": "def main():\n    from logpipe.runner import start\n",
        "runner.py": "import logging\n\n\ndef start():\n    import logpipe.cli\n",
        "core/a.py": "from . import b\n",
        "core/b.py": "from .a import thing\n",
        "core/c.py": "from logpipe.core import a\n",
    })
    assert import_cycles(all_imports(package)) == [
        "logpipe.cli -> logpipe.dev (cli.py:1) -> logpipe.runner (dev.py:2) -> logpipe.cli (runner.py:5)",
        "logpipe.core.a -> logpipe.core.b (core/a.py:1) -> logpipe.core.a (core/b.py:1)",
    ]


@pytest.mark.parametrize("source", ["from logpipe.core import a\n", "from logpipe.core.a import name\n"])
def test_checker_accepts_downward_imports(tmp_path, source):
    package = write_package(tmp_path, {"core/a.py": "", "analyzer/x.py": source, "gateway/y.py": source})
    edges = all_imports(package)
    assert [edge.target for edge in edges] == ["logpipe.core.a", "logpipe.core.a"]
    assert layer_violations(edges) == [] and import_cycles(edges) == []


OPERATOR_ROOT = Path(__file__).resolve().parents[1] / "operator" / "logpipe_operator"


def operator_imports_of_logpipe(root: Path) -> list[tuple[str, int, str]]:
    """(file, line, logpipe module) for every import of `logpipe` in the operator package."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module] if node.module != "logpipe" else [f"logpipe.{a.name}" for a in node.names]
            found += [(str(path.relative_to(root.parent)), node.lineno, name)
                      for name in names if name == "logpipe" or name.startswith("logpipe.")]
    return found


def test_the_operator_imports_only_core_stores_schemas_and_tokens():
    # The operator sits beside the services (ARCHITECTURE.md): it creates topics, tables and
    # collections through the same functions the services use, never through a service.
    found = operator_imports_of_logpipe(OPERATOR_ROOT)
    assert found, f"no logpipe imports found under {OPERATOR_ROOT}: is the path right?"
    allowed = MAY_IMPORT["operator"] - {"operator"}
    wrong = [f"{file}:{line}: imports {name}" for file, line, name in found
             if name == "logpipe" or part_of(name) not in allowed]
    assert not wrong, f"the operator may import only {', '.join(sorted(allowed))} of logpipe:\n" + "\n".join(wrong)


def test_the_operator_check_catches_a_service_import(tmp_path):
    package = tmp_path / "logpipe_operator"
    package.mkdir()
    (package / "handlers.py").write_text("from logpipe.gateway import auth\nfrom logpipe.core import topics\n")
    found = operator_imports_of_logpipe(package)
    assert [name for _, _, name in found] == ["logpipe.gateway", "logpipe.core"]
    assert part_of("logpipe.gateway") not in MAY_IMPORT["operator"]
