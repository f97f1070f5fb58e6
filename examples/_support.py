"""Plumbing shared by the examples: a Redis to talk to, and workers to run the app.

* :func:`redis_url` yields ``$REDIS_URL`` if set, else starts a private ``redis-server`` (unix
  socket in a temp dir, AOF on) and stops it on exit.
* :func:`in_process_worker` runs a :class:`Worker` inside the example's own event loop.
* :func:`worker_processes` is the library's :class:`~durable_redis.devtools.WorkerProcesses`
  for ``MODULE:app`` here: ``python -m durable_redis.runtime`` processes stopped (or killed) by
  their own pids.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio

from durable_redis.devtools import RedisServer, WorkerProcesses
from durable_redis.runtime import Worker, WorkerOptions
from durable_redis.storage import RedisStore

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


def worker_processes(
    module: str, url: str, namespace: str, options: WorkerOptions
) -> WorkerProcesses:
    """The library's runner for ``examples/<module>.py``'s ``app`` (logs in a temp dir)."""
    return WorkerProcesses(
        f"{module}:app",
        url,
        options,
        namespace=namespace,
        log_level="WARNING",
        cwd=HERE,
        pythonpath=[HERE],
    )


def finish(ok: bool, message: str) -> None:
    print(("OK: " if ok else "FAILED: ") + message, flush=True)
    sys.exit(0 if ok else 1)
