"""``WorkerProcesses``: worker processes for ``module:app``, started, awaited and stopped by pid.

The one process runner of the demo, the examples, the tests and the benchmarks. Each process is
``python -m durable_redis.runtime MODULE:APP ...`` (:func:`~durable_redis.runtime.process.
worker_command`), its output in a log file of its own; ``stop()`` sends SIGTERM to each of *its*
pids, waits a bounded time and SIGKILLs the ones still running. Never a broad kill::

    with WorkerProcesses("myapp:app", url, options, namespace="orders") as workers:
        workers.start(2)
        workers.wait_ready(timeout=20)
        ...  # drive the app with a Client
    # stopped (SIGTERM, then SIGKILL after `grace` seconds)

Readiness is the worker's ``"worker ... started for app"`` log line, so :meth:`wait_ready` needs
``log_level`` ``"INFO"`` (the default) or ``"DEBUG"``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from durable_redis.devtools._lifecycle import StopOnExit
from durable_redis.errors import ConfigurationError
from durable_redis.runtime.options import WorkerOptions
from durable_redis.runtime.process import DEFAULT_NAMESPACE, worker_command

__all__ = ["READY_MARK", "WorkerProcess", "WorkerProcesses"]

#: What a worker logs (at INFO) once it serves: ``worker <id> started for app ...``.
READY_MARK = " started for app "


@dataclass
class WorkerProcess:
    """One worker process this runner started: its ``Popen``, log file and options."""

    process: subprocess.Popen[bytes]
    log_path: Path
    options: WorkerOptions | None

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def terminate(self) -> None:
        """SIGTERM (a graceful stop); returns at once, see :meth:`wait`."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL (no shutdown at all) and reap it."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self.process.wait(10)

    def wait(self, timeout: float = 20.0) -> int:
        return self.process.wait(timeout)

    def stop(self, grace: float = 10.0) -> int:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; the exit code."""
        self.terminate()
        try:
            return self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.process.wait(10)

    def ready(self) -> bool:
        return READY_MARK in self.log()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


class WorkerProcesses(StopOnExit):
    """Worker processes serving ``app_ref`` on one Redis namespace; all stopped on exit.

    ``options`` is a :class:`WorkerOptions` or a mapping of its fields (validated here).
    ``cwd`` and ``pythonpath`` say where ``app_ref``'s module is found; ``env`` adds variables to
    every process (``start(env=...)`` to one); ``log_dir`` keeps the logs (default: a temporary
    directory, removed by nothing, so a failure can be read). ``new_session`` puts each process in
    its own session, so a Ctrl-C on the terminal reaches them only through :meth:`stop`.
    """

    def __init__(
        self,
        app_ref: str,
        redis_url: str,
        options: WorkerOptions | Mapping[str, Any] | None = None,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        log_level: str = "INFO",
        log_dir: str | os.PathLike[str] | None = None,
        log_prefix: str = "worker",
        cwd: str | os.PathLike[str] | None = None,
        pythonpath: Sequence[str | os.PathLike[str]] = (),
        env: Mapping[str, str] | None = None,
        new_session: bool = False,
        grace: float = 10.0,
    ) -> None:
        self.app_ref = app_ref
        self.redis_url = redis_url
        self.options = _options(options)
        self.namespace = namespace
        self.log_level = log_level
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.log_prefix = log_prefix
        self.cwd = str(cwd) if cwd is not None else None
        self.pythonpath = [str(p) for p in pythonpath]
        self.env = dict(env or {})
        self.new_session = new_session
        self.grace = grace
        self.workers: list[WorkerProcess] = []

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self.workers]

    def _environment(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        env = {**os.environ, **self.env, **(extra or {})}
        if self.pythonpath:
            env["PYTHONPATH"] = os.pathsep.join(
                [*self.pythonpath, *filter(None, [env.get("PYTHONPATH")])]
            )
        return env

    def start_one(
        self,
        options: WorkerOptions | Mapping[str, Any] | None = None,
        *,
        app_ref: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> WorkerProcess:
        """Start one more process (``options``, ``app_ref`` instead of the runner's, if given;
        ``env`` added to its environment)."""
        chosen = _options(options) if options is not None else self.options
        if self.log_dir is None:
            self.log_dir = Path(tempfile.mkdtemp(prefix="durable-redis-workers-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{self.log_prefix}-{len(self.workers)}.log"
        cmd = worker_command(
            app_ref or self.app_ref,
            self.redis_url,
            chosen,
            namespace=self.namespace,
            log_level=self.log_level,
        )
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                cmd,
                cwd=self.cwd,
                env=self._environment(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.new_session,
            )
        worker = WorkerProcess(proc, log_path, chosen)
        self.workers.append(worker)
        return worker

    def start(self, count: int = 1) -> list[WorkerProcess]:
        """Start ``count`` processes; returns them (their pids: :attr:`pids`)."""
        return [self.start_one() for _ in range(count)]

    def wait_ready(self, timeout: float = 20.0, *, poll: float = 0.05) -> bool:
        """True once every started process logged its start line; False at once if one exited,
        or after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            if any(not w.alive() for w in self.workers):
                return False
            if all(w.ready() for w in self.workers):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll)

    def get(self, pid: int) -> WorkerProcess:
        """One of *our* processes by pid (refuses any other pid: ConfigurationError)."""
        for worker in self.workers:
            if worker.pid == pid:
                return worker
        raise ConfigurationError(f"pid {pid} is not a worker process of this runner")

    def kill(self, pid: int) -> None:
        """SIGKILL one of *our* running workers (refuses any other pid)."""
        worker = self.get(pid)
        if not worker.alive():
            raise ConfigurationError(f"worker process {pid} is not running")
        worker.kill()

    def kill_all(self) -> None:
        """SIGKILL every process still running (a test's teardown: nothing is graceful)."""
        for worker in self.workers:
            worker.kill()

    def stop(self, grace: float | None = None) -> list[int]:
        """SIGTERM every running process, wait up to ``grace`` seconds for all of them, SIGKILL
        the rest; their exit codes, in start order."""
        grace = self.grace if grace is None else grace
        for worker in self.workers:
            worker.terminate()
        deadline = time.monotonic() + grace
        codes: list[int] = []
        for worker in self.workers:
            try:
                codes.append(worker.wait(max(0.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                worker.kill()
                codes.append(worker.wait(10))
        return codes

    def logs(self) -> str:
        return "\n".join(f"--- worker {w.pid} ---\n{w.log()}" for w in self.workers)

    def __enter__(self) -> WorkerProcesses:
        return self


def _options(options: WorkerOptions | Mapping[str, Any] | None) -> WorkerOptions | None:
    if options is None or isinstance(options, WorkerOptions):
        return options
    try:
        return WorkerOptions(**dict(options))
    except TypeError as exc:
        raise ConfigurationError(f"bad worker options {dict(options)!r}: {exc}") from None
