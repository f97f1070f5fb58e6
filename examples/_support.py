"""Plumbing shared by the examples: a Redis to talk to, and workers to run the app.

* :func:`redis_url` yields ``$REDIS_URL`` if set, else starts a private ``redis-server`` (unix
  socket in a temp dir, AOF on) and stops it on exit.
* :func:`in_process_worker` runs a :class:`Worker` inside the example's own event loop.
* :class:`WorkerProcesses` starts ``python -m durable_redis.runtime MODULE:app`` processes and
  stops (or kills) them by their own pids.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio

from durable_redis.runtime import Worker, WorkerOptions
from durable_redis.runtime.process import worker_command
from durable_redis.storage import RedisServer, RedisStore

HERE = Path(__file__).resolve().parent

# Short leases and waits, so the examples finish in seconds.
FAST = WorkerOptions(
    lock_timeout=2.0,
    fetch_wait=0.5,
    shutdown_grace_period=2.0,
    janitor_interval=None,
)


def unique_namespace(example: str) -> str:
    return f"example-{example}-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    with RedisServer(persistence=True) as server:
        yield server.url


@contextlib.asynccontextmanager
async def in_process_worker(
    app: Any, url: str, namespace: str, options: WorkerOptions = FAST
) -> AsyncIterator[Worker]:
    """A worker running as a task of the current event loop, stopped gracefully on exit."""
    store = RedisStore.from_url(url, namespace=namespace)
    worker = Worker(app, store, options)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            try:
                yield worker
            finally:
                worker.stop()
    finally:
        await store.close()


class WorkerProcesses:
    """Worker subprocesses for ``examples/<module>.py``'s ``app``; cleaned up on exit."""

    def __init__(self, module: str, url: str, namespace: str, options: WorkerOptions) -> None:
        self.cmd = worker_command(
            f"{module}:app", url, options, namespace=namespace, log_level="WARNING"
        )
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, count: int) -> list[int]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
        for _ in range(count):
            self.processes.append(
                subprocess.Popen(self.cmd, cwd=str(HERE), env=env, stdin=subprocess.DEVNULL)
            )
        return [p.pid for p in self.processes]

    def kill(self, pid: int) -> None:
        """SIGKILL one of *our* workers (refuses any other pid)."""
        for proc in self.processes:
            if proc.pid == pid and proc.poll() is None:
                os.kill(pid, signal.SIGKILL)
                proc.wait(10)
                return
        raise ValueError(f"pid {pid} is not a running worker of this example")

    def stop(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def __enter__(self) -> WorkerProcesses:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def finish(ok: bool, message: str) -> None:
    print(("OK: " if ok else "FAILED: ") + message, flush=True)
    sys.exit(0 if ok else 1)
