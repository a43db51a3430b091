"""Imports run one way: cli -> training -> cgan_export, and no module of a package imports back into a cycle."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports anywhere (top level or inside functions)."""
    graph = {}
    for path in sorted((ROOT / package).glob("*.py")):
        name, deps = path.stem, set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(package + "."):
                deps.add(node.module.split(".")[1])
        graph[name] = deps - {name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return trail + [node, dep]
            if dep not in state and (found := visit(dep, trail + [node])):
                return found
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node, [])):
            return found
    return None


@pytest.mark.parametrize("package", ["cgan_export", "training"])
def test_no_import_cycle_within_a_package(package):
    assert _cycle(_graph(package)) is None


def test_the_inference_package_never_imports_training_or_the_cli():
    for path in (ROOT / "cgan_export").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n == "cli" or n.split(".")[0] == "training" for n in names), path
