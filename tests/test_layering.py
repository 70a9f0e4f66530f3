"""The import direction and the size limits the layout promises, read from the source with ``ast`` (nothing is
imported, so a module that only imports the wrong thing lazily, inside a function, is caught too)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KMCP = ROOT / "kmcp"
MAX_FUNCTION_LINES = 80
# Not yet held to MAX_FUNCTION_LINES (none now: every module is checked; a path added here must exist).
FUNCTION_LENGTH_NOT_YET_CHECKED: tuple[str, ...] = ()

# (package, modules it must not import, why)
FORBIDDEN_IMPORTS = [
    ("kmcp/adapter", ("kmcp.controller", "kmcp.kube", "httpx", "kubernetes"),
     "the adapter runs in every MCP server pod: it knows nothing of the controller or the Kubernetes API"),
    ("kmcp/scaffold", ("kmcp.commands", "kmcp.cli"),
     "scaffolding is below the commands that use it; shared errors live in kmcp.errors"),
    ("kmcp/commands", ("kmcp.cli",), "the commands take request objects; only kmcp.cli knows argv"),
    ("kmcp/controller", ("httpx",),
     "the controller reaches the apiserver only through kmcp.kube, whose errors are typed (ApiUnavailable included)"),
]


def _modules(path: Path) -> Iterator[Path]:
    yield from sorted(path.rglob("*.py")) if path.is_dir() else [path]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_in(source: str, module: str, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, absolute dotted name) of every import anywhere in ``source``, the code of ``module``: relative imports
    resolved, and ``from kmcp import kube`` counted as importing kmcp.kube."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            imported = ".".join([*base, *([node.module] if node.module else [])])
            yield node.lineno, imported
            for alias in node.names:
                yield node.lineno, f"{imported}.{alias.name}"


def imported_names(path: Path) -> Iterator[tuple[int, str]]:
    return imports_in(path.read_text(), _module_name(path), path.name == "__init__.py")


def _is_within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize(("package", "forbidden", "why"), FORBIDDEN_IMPORTS, ids=[p for p, _, _ in FORBIDDEN_IMPORTS])
def test_imports_flow_one_way(package: str, forbidden: tuple[str, ...], why: str) -> None:
    found = [f"{path.relative_to(ROOT)}:{line} imports {name}"
             for path in _modules(ROOT / package)
             for line, name in imported_names(path)
             if any(_is_within(name, prefix) for prefix in forbidden)]
    assert not found, f"{why}:\n" + "\n".join(found)


def test_the_checker_sees_every_kind_of_import() -> None:
    """The forbidden-import test is only as good as imports_in: aliased, relative and lazy imports all count."""
    source = ("import httpx as h\nfrom kmcp import kube\nfrom .. import controller\n"
              "def later():\n    from kubernetes import client\n")
    names = {name for _, name in imports_in(source, "kmcp.adapter.example")}
    assert {"httpx", "kmcp.kube", "kmcp.controller", "kubernetes.client"} <= names


def long_functions(limit: int = MAX_FUNCTION_LINES) -> Iterator[str]:
    for path in _modules(KMCP):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(FUNCTION_LENGTH_NOT_YET_CHECKED):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > limit:
                    yield f"{relative}:{node.lineno} {node.name} is {length} lines"


def test_no_function_is_over_80_lines() -> None:
    found = list(long_functions())
    assert not found, f"split these along a seam (at most {MAX_FUNCTION_LINES} lines each):\n" + "\n".join(found)


def test_the_exclusions_name_real_paths() -> None:
    """An exclusion that outlived what it excluded would silently widen the check."""
    for excluded in FUNCTION_LENGTH_NOT_YET_CHECKED:
        assert (ROOT / excluded).exists(), excluded
