"""The README's first workflow, as written: ``shop.py`` and ``client.py`` pass ``mypy --strict``
and run (a ``durable-redis worker shop:app`` subprocess, then ``python client.py``)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_typing import mypy_errors

from durable_redis.devtools import RedisServer

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.e2e


def readme_files(into: Path) -> dict[str, Path]:
    """Every ```python block of the README that starts with ``# NAME.py``, written to ``into``."""
    files = {}
    for block in re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S):
        first = block.splitlines()[0]
        if re.fullmatch(r"# \w+\.py", first):
            path = into / first[2:]
            path.write_text(block)
            files[path.name] = path
    assert {"shop.py", "client.py"} <= set(files), files
    return files


def test_readme_files_pass_mypy_strict(tmp_path: Path) -> None:
    files = readme_files(tmp_path)
    assert mypy_errors(files["shop.py"], files["client.py"], cwd=tmp_path) == {}


def test_readme_client_runs_against_a_worker(redis_server: RedisServer, tmp_path: Path) -> None:
    files = readme_files(tmp_path)
    with RedisServer() as server:  # its own: the README uses the namespace "default"
        _run_readme(files, server.url, tmp_path)


def _run_readme(files: dict[str, Path], redis_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DURABLE_REDIS_NAMESPACE"}
    env["REDIS_URL"] = redis_url
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "durable_redis.cli", "worker", "shop:app"],
            cwd=str(tmp_path),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        result = subprocess.run(
            [sys.executable, str(files["client.py"])],
            cwd=str(tmp_path),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)
    assert result.returncode == 0, result.stdout + result.stderr + log.read_text()
    assert re.fullmatch(r"[0-9a-f]{32} receipt-1\n", result.stdout), result.stdout
