"""The package's shape: no import cycles, and no Redis or database client unless used."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import faststate

PACKAGE = Path(faststate.__file__).resolve().parent


def _module_graph() -> dict[str, set[str]]:
    """Every faststate module and the faststate modules it imports, counting every
    import: top level, inside functions and under ``TYPE_CHECKING``."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts).removesuffix(".__init__")
        modules[name] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package
                    for _ in range(node.level - 1):
                        anchor = anchor.rpartition(".")[0]
                    base = f"{anchor}.{base}" if base else anchor
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for child in graph[node]:
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in on_stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_cycle() -> None:
    graph = _module_graph()
    assert "faststate._transaction" in graph  # the walk found the package
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


_STATE_CHANGING_CALLS = (
    r"\.lock\(",
    r"\.save\(",
    r"\.publish\(",
    r"(?<![\w.])begin_tracking\(",
    r"(?<![\w.])rollback\(",
)


#: Modules that define those operations (stores, brokers, the tracker) or that use them.
_DEFINING = frozenset({"_transaction.py", "_state.py", "broker.py", "redis_broker.py"})


def test_only_the_transaction_module_locks_saves_or_publishes() -> None:
    """Atomicity, locking and publishing live in one place."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "_stores" or path.name in _DEFINING:
            continue
        text = path.read_text()
        for call in _STATE_CHANGING_CALLS:
            if re.search(call, text):
                offenders.append(f"{path.relative_to(PACKAGE)}: {call}")
    # push() publishes elements at an already committed version: no change of state.
    assert offenders == ["_live/mutations.py: \\.publish\\("]


def _imported_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint('\\n'.join(sorted(sys.modules)))"
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    return set(output.split())


def test_import_faststate_loads_no_redis_or_database_driver() -> None:
    modules = _imported_after("import faststate")
    assert not {m for m in modules if m == "redis" or m.startswith("redis.")}
    assert not {m for m in modules if m.startswith("psycopg")}
    assert "faststate._persistence" not in modules
    assert "faststate._stores.redis" not in modules


def test_redis_and_sql_load_when_used() -> None:
    modules = _imported_after("from faststate import RedisStore, SQLPersistence")
    assert "redis.asyncio" in modules
    assert "faststate._persistence" in modules


def test_import_faststate_loads_neither_jinja2_nor_fastapi() -> None:
    """Extras (``faststate[jinja]``, ``faststate[fastapi]``): only their modules load them."""
    modules = _imported_after("import faststate")
    for optional in (
        "jinja2",
        "markupsafe",
        "fastapi",
        "faststate.templating",
        "faststate.fastapi",
    ):
        assert optional not in modules
    assert "jinja2" in _imported_after("import faststate.templating")
    assert "fastapi" in _imported_after("import faststate.fastapi")
