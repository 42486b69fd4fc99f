"""DESIGN §1 dependency rules: import-linter contracts (pyproject.toml), domain uses
only the standard library, and no import cycles anywhere."""

import os
import pathlib
import shutil
import subprocess
import sys

import grimp
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGES = ("domain", "command_service", "query_service", "infrastructure", "cli", "deploy", "gateway")

pytestmark = pytest.mark.architecture


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _graph(include_external: bool = False) -> grimp.ImportGraph:
    sys.path.insert(0, str(ROOT))
    present = [p for p in PACKAGES if (ROOT / p / "__init__.py").exists()]
    return grimp.build_graph(*present, include_external_packages=include_external,
                             exclude_type_checking_imports=True, cache_dir=None)


def test_import_linter_contracts_are_kept():
    lint_imports = (shutil.which("lint-imports", path=os.path.dirname(sys.executable))
                    or shutil.which("lint-imports"))
    assert lint_imports, "lint-imports not found: run `make venv`"
    result = subprocess.run([lint_imports, "--no-cache", "--no-logo"], cwd=ROOT, env=_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_domain_imports_only_the_standard_library():
    graph = _graph(include_external=True)
    ours = set(PACKAGES) | {"edgewise"}
    offending = []
    for module in sorted(graph.find_descendants("domain") | {"domain"}):
        for imported in graph.find_modules_directly_imported_by(module):
            top = imported.split(".")[0]
            if top == "domain":
                continue
            if top in ours or top not in sys.stdlib_module_names:
                offending.append(f"{module} -> {imported}")
    assert not offending, "domain must import only the standard library:\n" + "\n".join(
        offending)


def _strongly_connected(nodes, edges):
    """Tarjan's algorithm, iterative; returns the components with more than one node."""
    index, low, on_stack, stack, result = {}, {}, set(), [], []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(edges.get(root, ())))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges.get(child, ()))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    result.append(sorted(component))
    return result


def test_no_import_cycles_between_modules():
    graph = _graph()
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    cycles = _strongly_connected(sorted(graph.modules), edges)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_import_cycles_between_top_level_packages():
    graph = _graph()
    edges: dict[str, set[str]] = {}
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            a, b = module.split(".")[0], imported.split(".")[0]
            if a != b:
                edges.setdefault(a, set()).add(b)
    cycles = _strongly_connected(sorted({m.split(".")[0] for m in graph.modules}), edges)
    assert not cycles, f"package cycles: {cycles}"


def test_cycle_finder_finds_a_cycle():
    assert _strongly_connected(["a", "b", "c"], {"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [
        ["a", "b", "c"]]
    assert _strongly_connected(["a", "b"], {"a": {"b"}}) == []
