"""Small async helpers shared by the e2e tests."""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from durable_redis.devtools import WorkerProcess, WorkerProcesses

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

# Short leases: a killed worker's sessions and activities move within ~2 s.
FAST_OPTIONS: dict[str, Any] = {
    "lock_timeout": 2.0,
    "session_lock_timeout": 2.0,
    "renewal_interval": 0.5,
    "fetch_wait": 0.5,
    "shutdown_grace_period": 5.0,
    "unregistered_backoff": 0.2,
    "unregistered_backoff_max": 1.0,
    "janitor_interval": None,
}


class WorkerPool:
    """Worker processes for one test (the library's runner, FAST_OPTIONS under each one's
    options); every one of them is SIGKILLed at teardown (``close``)."""

    def __init__(self, redis_url: str, namespace: str, tmp: Path) -> None:
        self.runner = WorkerProcesses(
            "e2e_app:app",
            redis_url,
            FAST_OPTIONS,
            namespace=namespace,
            log_dir=tmp,
            cwd=ROOT,
            pythonpath=[HERE, ROOT],
        )

    @property
    def workers(self) -> list[WorkerProcess]:
        return self.runner.workers

    @property
    def redis_url(self) -> str:
        return self.runner.redis_url

    @redis_url.setter
    def redis_url(self, url: str) -> None:  # later workers of the pool go to this Redis
        self.runner.redis_url = url

    @property
    def namespace(self) -> str:
        return self.runner.namespace

    @property
    def tmp(self) -> Path:
        assert self.runner.log_dir is not None
        return self.runner.log_dir

    def start(self, app_ref: str = "e2e_app:app", **options: Any) -> WorkerProcess:
        return self.runner.start_one({**FAST_OPTIONS, **options}, app_ref=app_ref)

    def close(self) -> None:
        self.runner.kill_all()

    def logs(self) -> str:
        return self.runner.logs()


async def eventually(
    predicate: Callable[[], Awaitable[Any]] | Callable[[], Any],
    timeout: float = 15.0,
    interval: float = 0.05,
    message: str = "condition",
) -> None:
    """Poll ``predicate`` (sync or async) until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await anyio.sleep(interval)


def markers(directory: Path, prefix: str) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(prefix))
