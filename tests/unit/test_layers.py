"""Layers without back-edges: which parts of the package may import which.

The worker never imports the server and the server never imports the worker; neither
imports the command-line programs; the neutral modules (wire schemas, settings and their
parsing) import none of the parts that use them; models and processors, which run inside
children, import nothing of the supervisor or the server. Read from the source with
``ast``, so a new module is checked without being listed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "morag_worker"

NEUTRAL = (
    "morag_worker.protocol",
    "morag_worker.options",
    "morag_worker.settings",
    "morag_worker.sizes",
    "morag_worker.argparsing",
    "morag_worker.errors",
    "morag_worker.config",
    "morag_worker.task_params",
    "morag_worker.connection",
)
#: (modules, prefixes they must not import)
RULES: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    (("morag_worker.server",), ("morag_worker.supervisor", "morag_worker.cli")),
    (("morag_worker.supervisor",), ("morag_worker.server", "morag_worker.cli")),
    (
        ("morag_worker.processors", "morag_worker.models"),
        ("morag_worker.supervisor", "morag_worker.server", "morag_worker.cli"),
    ),
    (("morag_worker.models",), ("morag_worker.processors",)),
    (
        ("morag_worker.links",),  # the supervisor uses the links, never the other way
        (
            "morag_worker.supervisor",
            "morag_worker.server",
            "morag_worker.cli",
            "morag_worker.processors",
            "morag_worker.models",
        ),
    ),
    (
        NEUTRAL,
        (
            "morag_worker.supervisor",
            "morag_worker.server",
            "morag_worker.cli",
            "morag_worker.processors",
            "morag_worker.models",
        ),
    ),
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("rule", range(len(RULES)))
def test_no_back_edges(rule: int) -> None:
    sources, forbidden = RULES[rule]
    wrong = sorted(
        f"{module} imports {target}"
        for module, path in _modules().items()
        if _under(module, sources)
        for target in _imports(path)
        if _under(target, forbidden)
    )
    assert wrong == []
