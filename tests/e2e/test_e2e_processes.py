"""``run_worker(..., processes=N)``: N worker processes, SIGTERM forwarded, clean exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from durable_redis.client import Client
from tests.e2e.e2e_helpers import HERE, ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.anyio, pytest.mark.timeout(90)]


def _processes_with(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and "pytest" not in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc").exists(), reason="not applicable: no /proc")
async def test_run_worker_spawns_processes_and_forwards_sigterm(
    client: Client, e2e_redis_url: str, namespace: str, tmp_path: Path
) -> None:
    script = (
        "import sys\n"
        "from durable_redis.runtime import WorkerOptions, run_worker\n"
        "opts = WorkerOptions(fetch_wait=0.5, janitor_interval=None, shutdown_grace_period=2)\n"
        f"sys.exit(run_worker('e2e_app:app', {e2e_redis_url!r}, opts, processes=2,"
        f" namespace={namespace!r}))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(ROOT)]))
    with (tmp_path / "run_worker.log").open("wb") as log:
        parent = subprocess.Popen(
            [sys.executable, "-c", script], env=env, cwd=str(ROOT), stdout=log, stderr=log
        )
    try:
        ids = [await client.start("hello", str(i)) for i in range(6)]
        results = [await client.wait_for_completion(i, timeout=30) for i in ids]
        assert all(r.startswith("hello ") for r in results)
        children = [p for p in _processes_with(namespace) if p != parent.pid]
        assert len(children) == 2, children
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(30) == 0
        assert _processes_with(namespace) == []
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for pid in _processes_with(namespace):
            os.kill(pid, signal.SIGKILL)


async def test_a_worker_on_a_function_instead_of_the_app_refuses_to_start(
    workers: Any, client: Client
) -> None:
    """Issue 11, bug 1: ``worker e2e_app:hello`` (an orchestration) crashed every turn and
    failed live instances as poison; now it exits at once, naming the mistake."""
    live = await client.start("hello", "victim", instance_id="victim")
    wrong = workers.start("e2e_app:hello")
    assert wrong.wait(timeout=30) == 1
    log = wrong.log()
    assert "'e2e_app:hello' is the function 'hello', not an App" in log, log
    assert "did you mean 'e2e_app:app'" in log
    state = await client.get_status(live)
    assert state is not None and state.status.value == "pending", state  # untouched
    workers.start()
    result = await client.wait_for_completion(live, timeout=30)
    assert result.startswith("hello victim from "), result
