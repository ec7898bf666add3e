"""The Python package's layering (docs/ARCHITECTURE.md): no import cycle anywhere in
python/seqfuse, counting imports made inside functions too, and dependencies that point one
way (the runtime and the models know nothing of training, export, benchmarks or the CLI).

The import graph is read from the source with ``ast``, so the test sees every import a
module could make, not only those one run happens to execute.
"""

from __future__ import annotations

import ast

from conftest import REPO

PKG = REPO / "python" / "seqfuse"


def _modules() -> dict[str, ast.Module]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = ast.parse(p.read_text(encoding="utf-8"), str(p))
    return out


def _import_graph() -> dict[str, set[str]]:
    """module -> the seqfuse modules it imports (``from pkg import name`` counts as
    ``pkg.name`` when that is a module, else as ``pkg``)."""
    trees = _modules()
    known = set(trees) | {"seqfuse._C"}

    def owner(name: str) -> str:
        while name not in known and "." in name:
            name = name.rsplit(".", 1)[0]
        return name

    graph: dict[str, set[str]] = {}
    for mod, tree in trees.items():
        is_pkg = (PKG.parent / mod.replace(".", "/") / "__init__.py").exists()
        deps: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    here = here[: len(here) - (node.level - 1)]
                    base = ".".join(here + ([base] if base else []))
                names = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
                ]
            else:
                continue
            deps |= {owner(n) for n in names if n.split(".")[0] == "seqfuse"}
        graph[mod] = {d for d in deps if d in trees and d != mod}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_cycle_finder_finds_a_cycle():
    # the oracle for the real test: a known two-cycle and a known three-cycle are found
    g = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c", "a"}, "f": set()}
    assert sorted(_cycles(g)) == [["a", "b"], ["c", "d", "e"]]


def test_no_import_cycle_in_the_package():
    graph = _import_graph()
    assert len(graph) > 40  # the scan saw the package
    assert "seqfuse.native.contract" in graph["seqfuse.native.cpu"]  # and its edges
    assert _cycles(graph) == []


# What each lower layer may import (seqfuse modules, by prefix). Above them, export and
# train use models and the runtime; bench and the CLI may use everything.
ALLOWED = {
    "seqfuse.errors": (),
    "seqfuse.version": (),
    "seqfuse.models": ("seqfuse.models", "seqfuse.errors"),
    "seqfuse.data": ("seqfuse.data", "seqfuse.models", "seqfuse.errors"),
    "seqfuse.native": ("seqfuse.native", "seqfuse._C", "seqfuse.models", "seqfuse.errors"),
    # accelerate/restore: the runtime layer, beside seqfuse.native and on top of it
    "seqfuse.accel": ("seqfuse.accel", "seqfuse.native", "seqfuse.errors"),
}


def test_dependencies_point_one_way():
    graph = _import_graph()
    wrong = []
    for mod, deps in graph.items():
        for layer, allowed in ALLOWED.items():
            if mod == layer or mod.startswith(layer + "."):
                wrong += [f"{mod} -> {d}" for d in deps if not d.startswith(allowed or ("-",))]
    assert wrong == []
    # nothing below the tooling imports the tooling: benchmarks, the demo and the command
    # line (seqfuse.cli and each package's cli* subcommand modules). The deprecated alias
    # seqfuse.native_cuda re-exports the CUDA self-check, and is the one exception.

    def tooling(m: str) -> bool:
        last = m.rsplit(".", 1)[-1]
        return m.startswith(("seqfuse.bench", "seqfuse.demo")) or last.startswith("cli")

    users = {m for m, deps in graph.items() if not tooling(m) and any(tooling(d) for d in deps)}
    assert users <= {"seqfuse.native_cuda", "seqfuse.__main__"}, users
