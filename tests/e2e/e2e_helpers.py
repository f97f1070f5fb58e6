"""Small async helpers shared by the e2e tests."""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

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


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill9(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            self.process.wait(10)

    def terminate(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)

    def wait(self, timeout: float = 20) -> int:
        return self.process.wait(timeout)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class WorkerPool:
    """Starts worker processes for one test and kills every one of them at teardown."""

    def __init__(self, redis_url: str, namespace: str, tmp: Path) -> None:
        self.redis_url = redis_url
        self.namespace = namespace
        self.tmp = tmp
        self.workers: list[WorkerProcess] = []

    def start(self, app_ref: str = "e2e_app:app", **options: Any) -> WorkerProcess:
        merged = {**FAST_OPTIONS, **options}
        log_path = self.tmp / f"worker-{len(self.workers)}.log"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(HERE), str(ROOT), env.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep)
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "durable_redis.runtime",
                    app_ref,
                    "--redis-url",
                    self.redis_url,
                    "--namespace",
                    self.namespace,
                    "--options",
                    json.dumps(merged),
                    "--log-level",
                    "INFO",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(ROOT),
            )
        worker = WorkerProcess(proc, log_path, merged)
        self.workers.append(worker)
        return worker

    def close(self) -> None:
        for worker in self.workers:
            if worker.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)
                worker.process.wait(10)

    def logs(self) -> str:
        return "\n".join(f"--- worker {w.pid} ---\n{w.log()}" for w in self.workers)


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
