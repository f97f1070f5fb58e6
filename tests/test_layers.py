"""core/ is pure: it imports nothing from redis, storage, runtime or anyio, and reads no wall
clock and no global random (a static AST check over every core file, plus an import check in a
fresh interpreter)."""

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
