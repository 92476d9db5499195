"""The import graph keeps ARCHITECTURE.md's floors: arrows only point down, and there is no circle.

Floors, top to bottom: surfaces, server, gateway, ops, agent, controller, runtimes, engines, catalog,
modelstore, hardware, store, domain, then the shared leaves (config, errors). A module may import its
own floor's modules and any floor below; ``domain`` imports nothing of the project. Imports made only
for type checking (under ``if TYPE_CHECKING:``) count too: a type from a higher floor is a hidden
arrow up. ``python tests/test_layers.py`` prints the package graph.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "aima"
FLOORS = ["surfaces", "server", "gateway", "ops", "agent", "controller", "runtimes", "engines", "catalog",
          "modelstore", "hardware", "store", "domain", "config", "errors"]
LEAVES = {"config", "errors"}  # shared by every floor (domain excepted)
TOP = {"__init__", "__main__"}  # the package's own entry points


def floor_of(module: str) -> str | None:
    """``aima.controller.launch`` -> ``controller``; the package itself and its entry points -> None."""
    parts = module.split(".")
    if parts[0] != "aima" or len(parts) < 2 or parts[1] in TOP:
        return None
    return parts[1]


def imports() -> dict[str, set[str]]:
    """Module -> the aima modules it imports (anywhere in it: top level, functions, TYPE_CHECKING)."""
    out: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        mod = ".".join(p for p in rel.parts if p != "__init__")
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("aima"))
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("aima"):
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)  # `from aima import runtimes`
        out[mod] = found
    return out


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {f: set() for f in FLOORS}
    for mod, targets in imports().items():
        src = floor_of(mod)
        if src is None:
            continue
        for t in targets:
            dst = floor_of(t)
            if dst is not None and dst != src and dst in graph:
                graph[src].add(dst)
    return graph


def test_every_floor_is_known() -> None:
    on_disk = {p.stem if p.is_file() else p.name for p in SRC.iterdir()
               if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.stem not in TOP)}
    assert on_disk <= set(FLOORS), f"a new floor must be placed in ARCHITECTURE.md's list: {on_disk - set(FLOORS)}"


def test_arrows_only_point_down() -> None:
    rank = {f: i for i, f in enumerate(FLOORS)}
    up = []
    for mod, targets in sorted(imports().items()):
        src = floor_of(mod)
        if src is None:
            continue
        for t in sorted(targets):
            dst = floor_of(t)
            if dst is None or dst == src or dst not in rank:  # (``from aima import __version__``)
                continue
            if src == "domain" or (rank[dst] < rank[src] and dst not in LEAVES):
                up.append(f"{mod} -> {t}")
    assert not up, "imports against the floors:\n" + "\n".join(up)


def test_no_circle_between_packages() -> None:
    graph = package_graph()
    seen: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        seen[n] = 1
        path.append(n)
        for m in sorted(graph[n]):
            if seen.get(m) == 1:
                return [*path[path.index(m):], m]
            if m not in seen and (cycle := visit(m)):
                return cycle
        path.pop()
        seen[n] = 2
        return None

    for n in FLOORS:
        if n not in seen and (cycle := visit(n)):
            raise AssertionError("a circle: " + " -> ".join(cycle))


if __name__ == "__main__":
    for src, dsts in package_graph().items():
        print(f"{src:>11} -> {', '.join(d for d in FLOORS if d in dsts) or '-'}", file=sys.stdout)
