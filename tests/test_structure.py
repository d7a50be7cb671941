"""The package's shape: no import cycle, the daemon never imports the exchange simulator, no
class a newcomer cannot read in one sitting. Read from the source (ast), nothing is run."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "hedgerd"
MAX_CLASS_LINES = 500
SIMULATOR = "hedgerd.exchange_sim"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text()) for p in sorted(PACKAGE.rglob("*.py"))}


def _runtime_imports(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """hedgerd modules ``name`` imports when it is loaded (module level, not under TYPE_CHECKING)."""
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.startswith("hedgerd"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
    found.discard(name)
    return found


def test_no_import_cycle() -> None:
    modules = _modules()
    graph = {name: _runtime_imports(name, tree, set(modules)) for name, tree in modules.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph.get(name, ())):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert len(graph) > 50  # the whole package was read
    assert cycles == []


def test_no_production_module_imports_the_exchange_simulator() -> None:
    offenders = []
    for name, tree in _modules().items():
        if name.startswith(SIMULATOR):
            continue
        for node in ast.walk(tree):
            targets = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            offenders += [(name, t) for t in targets if t.startswith(SIMULATOR)]
    assert offenders == []


def test_loading_the_daemon_and_the_cli_loads_no_simulator() -> None:
    script = ("import sys, hedgerd.daemon, hedgerd.cli, hedgerd.connectors.ccxt.venue, hedgerd.connectors.paper; "
              f"print(sorted(m for m in sys.modules if m.startswith({SIMULATOR!r})))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"


def test_no_class_over_the_size_a_newcomer_reads_in_one_sitting() -> None:
    too_big = [(name, node.name, node.end_lineno - node.lineno + 1)
               for name, tree in _modules().items() for node in ast.walk(tree)
               if isinstance(node, ast.ClassDef) and node.end_lineno is not None
               and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES]
    assert too_big == []
