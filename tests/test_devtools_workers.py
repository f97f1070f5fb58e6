"""``durable_redis.devtools.WorkerProcesses``: the one runner of worker processes (demo, examples,
tests, benchmarks). Real processes against the suite's Redis; each stopped by its own pid."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import anyio
import pytest

from durable_redis.client import Client
from durable_redis.devtools import WorkerProcesses
from durable_redis.errors import ConfigurationError

pytestmark = [pytest.mark.timeout(120)]

E2E = Path(__file__).resolve().parent / "e2e"
FAST = {"fetch_wait": 0.5, "shutdown_grace_period": 2.0, "janitor_interval": None}


def runner(redis_url: str, namespace: str, tmp_path: Path, **kw: object) -> WorkerProcesses:
    return WorkerProcesses(
        "e2e_app:app",
        redis_url,
        FAST,
        namespace=namespace,
        log_dir=tmp_path,
        pythonpath=[E2E],
        **kw,  # type: ignore[arg-type]
    )


def test_start_wait_ready_serve_and_stop_by_pid(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    with runner(redis_url, namespace, tmp_path) as workers:
        started = workers.start(2)
        assert [w.pid for w in started] == workers.pids and len(set(workers.pids)) == 2
        assert workers.wait_ready(timeout=30), workers.logs()
        assert all(w.ready() and w.alive() for w in started)

        async def run() -> object:
            async with Client.from_url(redis_url, namespace=namespace) as client:
                handle = await client.start("hello", "devtools")
                return await handle.result(timeout=30)

        assert "devtools" in str(anyio.run(run))

        with pytest.raises(ConfigurationError, match="not a worker process"):
            workers.kill(os.getpid())  # never a pid it did not start
        victim = started[0]
        workers.kill(victim.pid)
        assert not victim.alive() and victim.process.returncode == -signal.SIGKILL
        with pytest.raises(ConfigurationError, match="not running"):
            workers.kill(victim.pid)
        codes = workers.stop(grace=20)
    assert codes == [-signal.SIGKILL, 0]  # the killed one, then a graceful SIGTERM stop
    assert all(not w.alive() for w in started)
    assert (tmp_path / "worker-0.log").exists() and (tmp_path / "worker-1.log").exists()


def test_wait_ready_is_false_at_once_when_a_process_exits(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    bad = WorkerProcesses("no_such_module:app", redis_url, namespace=namespace, log_dir=tmp_path)
    with bad as w:
        w.start(1)
        assert w.wait_ready(timeout=60) is False
        assert not w.workers[0].alive()
        assert "no_such_module" in w.workers[0].log()


def test_stop_kills_what_does_not_stop_in_time(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    with runner(redis_url, namespace, tmp_path) as workers:
        (worker,) = workers.start(1)
        assert workers.wait_ready(timeout=30), workers.logs()
        os.kill(worker.pid, signal.SIGSTOP)  # stopped: it cannot act on the SIGTERM
        try:
            codes = workers.stop(grace=0.5)
        finally:
            if worker.alive():
                os.kill(worker.pid, signal.SIGCONT)
    assert codes == [-signal.SIGKILL]


def test_bad_options_are_a_configuration_error(redis_url: str) -> None:
    with pytest.raises(ConfigurationError, match="bad worker options"):
        WorkerProcesses("m:app", redis_url, {"no_such_option": 1})
