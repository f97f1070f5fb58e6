"""The layers, checked statically.

* core/ is pure: it imports nothing from redis, storage, runtime or anyio, and reads no wall
  clock and no global random (a static AST check over every core file, plus an import check in a
  fresh interpreter).
* Every edge between the package's layers (core, storage, runtime, client, cli, dashboard,
  devtools, testing, and the leaves errors/ids/_version) is one the table below allows.
* No import cycle in ``durable_redis/`` or ``benchmarks/``: module level, inside functions and
  under ``TYPE_CHECKING`` alike.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "durable_redis" / "core"
CORE_FILES = sorted(CORE.rglob("*.py"))

FORBIDDEN_MODULES = (
    "redis",
    "anyio",
    "durable_redis.storage",
    "durable_redis.runtime",
    "durable_redis.client",
    "durable_redis.cli",
    "socket",
    "secrets",
    "threading.Timer",
)
# attribute calls that read a clock or global randomness
FORBIDDEN_CALLS = {
    ("time", "time"),
    ("time", "time_ns"),
    ("time", "monotonic"),
    ("time", "monotonic_ns"),
    ("time", "perf_counter"),
    ("time", "perf_counter_ns"),
    ("time", "sleep"),
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
    ("uuid", "uuid1"),
    ("uuid", "uuid4"),
    ("os", "urandom"),
    ("os", "getrandom"),
    ("random", "random"),
    ("random", "randint"),
    ("random", "choice"),
    ("random", "shuffle"),
    ("random", "uniform"),
    ("random", "randrange"),
    ("random", "getrandbits"),
    ("random", "seed"),
    ("random", "sample"),
    ("random", "choices"),
    ("random", "SystemRandom"),
}
FORBIDDEN_NAMES = {
    "time",
    "time_ns",
    "monotonic",
    "perf_counter",
    "uuid4",
    "uuid1",
    "urandom",
    "pickle",
    "loads",
    "dumps",
}


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    aliases = {  # `import random as _random` -> {"_random": "random"}
        a.asname: a.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for a in node.names
        if a.asname
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names]
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else names
            for module in modules:
                if module in ("pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve"):
                    found.append(f"{path.name}:{node.lineno} imports {module}")
                if any(module == f or module.startswith(f + ".") for f in FORBIDDEN_MODULES):
                    found.append(f"{path.name}:{node.lineno} imports {module}")
            if isinstance(node, ast.ImportFrom) and node.module in ("time", "random", "uuid", "os"):
                for alias in names:
                    if (node.module, alias) in FORBIDDEN_CALLS or alias in FORBIDDEN_NAMES:
                        found.append(f"{path.name}:{node.lineno} imports {node.module}.{alias}")
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name | ast.Attribute):
            if isinstance(node.value, ast.Name):
                base = aliases.get(node.value.id, node.value.id)
            else:  # datetime.datetime.now
                base = node.value.attr
            if (base, node.attr) in FORBIDDEN_CALLS:
                found.append(f"{path.name}:{node.lineno} uses {base}.{node.attr}")
    return found


def test_core_files_exist() -> None:
    assert len(CORE_FILES) >= 8


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_core_has_no_io_clock_or_global_random(path: Path) -> None:
    assert _violations(path) == []


def test_the_checker_catches_violations(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import redis\nimport time\nimport random as _random\nfrom datetime import datetime\n"
        "from uuid import uuid4\nimport pickle\n"
        "x = time.time()\ny = datetime.now()\nz = _random.random()\n"
    )
    found = _violations(bad)
    assert len(found) == 6, found


def test_importing_core_loads_no_forbidden_module() -> None:
    code = (
        "import json, sys\n"
        "import durable_redis.core, durable_redis.testing\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded = json.loads(out.stdout)
    bad = [
        m
        for m in loaded
        if m.split(".")[0] in ("redis", "anyio", "pickle")
        or m.startswith(("durable_redis.storage", "durable_redis.runtime"))
    ]
    assert bad == []


# -- every layer edge -----------------------------------------------------------------------------
PACKAGE = ROOT / "durable_redis"
BENCHMARKS = ROOT / "benchmarks"

LEAVES = {"durable_redis.errors", "durable_redis.ids", "durable_redis._version"}
CLIENT = {
    "durable_redis.client",
    "durable_redis.sync_client",
    "durable_redis._client_messaging",
    "durable_redis._jobs_client",
    "durable_redis._schedules_client",
    "durable_redis._identity",
    "durable_redis._queues_client",
    "durable_redis._render",
}
CLI = {"durable_redis.cli", "durable_redis.demo"}  # and every durable_redis._cli_* module

# layer -> the layers it may import (itself always)
ALLOWED = {
    "leaf": {"leaf"},
    "core": {"leaf"},
    "storage": {"leaf", "core"},
    "runtime": {"leaf", "core", "storage"},
    "client": {"leaf", "core", "storage", "runtime"},
    "devtools": {"leaf", "runtime"},
    # the test kit for users' tests: replay checks over core, and a harness above the client
    # (the module-level imports of durable_redis.testing stay pure: checked below)
    "testing": {"leaf", "core", "storage", "runtime", "client", "devtools"},
    "dashboard": {"leaf", "core", "storage", "client"},
    "cli": {"leaf", "core", "storage", "runtime", "client", "dashboard", "devtools", "testing"},
    # the root __init__ names the public API lazily (PEP 562) and under TYPE_CHECKING
    "api": {"leaf", "core", "storage", "runtime", "client", "devtools", "testing"},
}


def layer_of(module: str) -> str:
    if module == "durable_redis":
        return "api"
    if module in LEAVES or module.startswith("durable_redis.contract"):
        return "leaf"
    if module in CLIENT:
        return "client"
    if module in CLI or module.startswith("durable_redis._cli_"):
        return "cli"
    for name in ("core", "storage", "runtime", "dashboard", "devtools"):
        if module == f"durable_redis.{name}" or module.startswith(f"durable_redis.{name}."):
            return name
    if module in (
        "durable_redis.testing",
        "durable_redis.pytest_plugin",
        "durable_redis._replay_gate",
    ) or module.startswith("durable_redis._test"):
        return "testing"
    raise AssertionError(f"{module} is in no layer: add it to tests/test_layers.py")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    for path in sorted(BENCHMARKS.glob("*.py")):  # run as scripts: `import report` is bare
        found[f"benchmarks.{path.stem}"] = path
    return found


MODULES = _modules()


def _target(module: str, name: str) -> str | None:
    """The module of ours an import of ``name`` from ``module`` loads (None if not ours)."""
    if module.startswith("benchmarks.") and f"benchmarks.{name.split('.')[0]}" in MODULES:
        return f"benchmarks.{name.split('.')[0]}"
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, path: Path) -> list[tuple[str, int]]:
    """Every module of ours that ``module`` imports, anywhere in the file: at module level,
    inside functions and under ``TYPE_CHECKING`` (target, line)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[: len(parent) - (node.level - 1)]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            # `from pkg import sub` loads pkg.sub when it is a module
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            ]
        for name in names:
            target = _target(module, name)
            if target is not None and target != module:
                out.append((target, node.lineno))
    return out


GRAPH = {m: imports_of(m, p) for m, p in MODULES.items()}


def test_every_module_is_in_a_layer() -> None:
    for module in MODULES:
        if module.startswith("durable_redis"):
            layer_of(module)


def test_every_layer_edge_is_allowed() -> None:
    bad = [
        f"{module}:{line} imports {target} ({layer_of(module)} -> {layer_of(target)})"
        for module, edges in GRAPH.items()
        if module.startswith("durable_redis")
        for target, line in edges
        if target.startswith("durable_redis")
        and layer_of(target) != layer_of(module)
        and layer_of(target) not in ALLOWED[layer_of(module)]
    ]
    assert bad == []


def find_cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(cycles)


def test_no_import_cycle_in_the_package_or_the_benchmarks() -> None:
    graph = {m: sorted({t for t, _ in edges}) for m, edges in GRAPH.items()}
    assert find_cycles(graph) == []


def test_the_cycle_finder_sees_cycles() -> None:
    graph = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"], "e": ["f"], "f": ["e"]}
    assert find_cycles(graph) == [["a", "b", "c"], ["e", "f"]]
    assert find_cycles({"a": ["b"], "b": []}) == []


def test_the_import_reader_sees_lazy_and_type_checking_imports(tmp_path: Path) -> None:
    mod = tmp_path / "m.py"
    mod.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from durable_redis.core.engine import ReplayEngine\n"
        "def f():\n    from durable_redis import ids\n    import durable_redis.storage.keys\n"
    )
    found = {t for t, _ in imports_of("durable_redis.core.x", mod)}
    assert found == {
        "durable_redis.core.engine",
        "durable_redis.ids",
        "durable_redis.storage.keys",
    }


def test_every_benchmark_module_imports() -> None:
    """The benchmarks run as scripts, outside the suite: a moved module must not break them."""
    names = sorted(p.stem for p in BENCHMARKS.glob("*.py"))
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\n"
    done = subprocess.run(
        [sys.executable, "-c", code, *names],
        cwd=BENCHMARKS,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
