"""``Worker``: one process's orchestration and activity dispatchers, session manager and janitor.

Shutdown (``stop()``, or SIGTERM/SIGINT with ``handle_signals=True``):

1. stop fetching (an idle fetch returns within ``fetch_wait``; anything it still brings is handed
   back at once without counting an attempt);
2. release at once every session with no activity running here;
3. let in-flight turns and activities finish within ``shutdown_grace_period``;
4. hand back what is left (abandon, attempt not counted) and release the remaining sessions.

A second signal shortens the grace period to zero.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio

from durable_redis.core import App, Codec
from durable_redis.errors import NamespaceMissingError
from durable_redis.runtime import _bridge
from durable_redis.runtime.activities import ActivityDispatcher
from durable_redis.runtime.heartbeat import Heartbeat
from durable_redis.runtime.jobs import JobDispatcher
from durable_redis.runtime.options import WorkerOptions, new_worker_id
from durable_redis.runtime.orchestrations import OrchestrationDispatcher
from durable_redis.runtime.schedules import ScheduleRunner
from durable_redis.runtime.sessions import SessionManager
from durable_redis.storage.base import Store

__all__ = ["Worker"]

logger = logging.getLogger(__name__)


class Worker:
    """Runs the orchestrations and activities of ``app`` from ``store``.

    ::

        worker = Worker(app, store, WorkerOptions(activity_concurrency=32))
        await worker.run(handle_signals=True)   # until stop() or SIGTERM/SIGINT
    """

    def __init__(
        self,
        app: App,
        store: Store,
        options: WorkerOptions | None = None,
        *,
        codec: Codec | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``clock``: monotonic seconds the session idle timeout is judged by (default
        ``time.monotonic``; ``durable_redis.testing`` passes its virtual clock)."""
        _bridge.check_app(app)
        self.app = app
        self.store = store
        self.options = options if options is not None else WorkerOptions()
        self.worker_id = self.options.worker_id or new_worker_id()
        self.codec = codec if codec is not None else _bridge.default_codec(app)
        self.sessions = SessionManager(
            store, self.worker_id, self.options, clock=clock or time.monotonic
        )
        self._orchestrations = OrchestrationDispatcher(
            app, store, self.options, self.worker_id, self.codec
        )
        self._activities = ActivityDispatcher(
            app, store, self.options, self.worker_id, self.sessions, self.codec
        )
        self.heartbeat = Heartbeat(self)
        self._activities.after_renewal = self.heartbeat.poke
        if self.options.local_handoff:
            self._orchestrations.activities = self._activities
            self._activities.on_turn = self._orchestrations.run_adopted
            self._activities.skips = self._orchestrations.skips
        # jobs need a store with the JobStore methods (RedisStore); JobDispatcher.enabled checks
        self._jobs = JobDispatcher(
            app,
            store,  # type: ignore[arg-type]
            self.options,
            self.worker_id,
            self.codec,
        )
        self._schedules = ScheduleRunner(app, store, self.options, self.codec)
        self._stopping: anyio.Event | None = None
        self._stop_requested = threading.Event()
        self._grace_period = self.options.shutdown_grace_period
        self._deadline: float | None = None
        self._started = threading.Event()
        self._token: Any = None
        self._loop_thread: threading.Thread | None = None

    # -- control -------------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self._started.is_set() and self._stopping is not None

    def stop(self, *, grace_period: float | None = None) -> None:
        """Ask the worker to shut down gracefully. Safe from any thread; idempotent."""
        if grace_period is not None:
            self._grace_period = min(self._grace_period, grace_period)
        self._stop_requested.set()
        if self._token is None:
            return  # not running yet: run() sees the request when it starts
        if threading.current_thread() is self._loop_thread:
            self._begin_stop()
            return
        try:
            anyio.from_thread.run_sync(self._begin_stop, token=self._token)
        except Exception:  # the loop has ended already
            logger.debug("stop() after the worker's event loop ended")

    def _begin_stop(self) -> None:
        if self._stopping is None or self._stopping.is_set():
            return
        logger.info("worker %s stopping (grace period %.1fs)", self.worker_id, self._grace_period)
        self._deadline = anyio.current_time() + self._grace_period
        self._stopping.set()

    # -- main loop -----------------------------------------------------------------------------
    async def run(self, *, handle_signals: bool = False) -> None:
        """Serve until :meth:`stop` (or SIGTERM/SIGINT if ``handle_signals``), then shut down.

        Raises NamespaceMissingError, and stops at once, if the namespace's data vanishes from
        Redis while it runs (flushed, or restarted without persistence): re-creating it would
        silently start over.
        """
        try:
            await self._run(handle_signals)
        except BaseExceptionGroup as group:
            vanished = group.subgroup(NamespaceMissingError)
            if vanished is None:
                raise
            logger.critical(
                "worker %s stops: the namespace vanished from Redis (flushed, or restarted "
                "without persistence); it will not be re-created",
                self.worker_id,
                extra={"worker_id": self.worker_id},
            )
            raise _first_leaf(vanished) from group

    async def _run(self, handle_signals: bool) -> None:
        if self._stopping is not None:
            raise RuntimeError("Worker.run() can only be called once")
        self._stopping = stopping = anyio.Event()
        self._token = anyio.lowlevel.current_token()
        self._loop_thread = threading.current_thread()
        await self.store.initialize()
        await self.heartbeat.beat()
        logger.info(
            "worker %s started for app %r: orchestrations %s; activities %s",
            self.worker_id,
            getattr(self.app, "name", "?"),
            ", ".join(getattr(self.app, "orchestration_names", ())) or "none",
            ", ".join(getattr(self.app, "activity_names", ())) or "none",
            extra={"worker_id": self.worker_id},
        )
        self._started.set()
        if self._stop_requested.is_set():
            self._begin_stop()
        async with anyio.create_task_group() as outer:
            outer.start_soon(self._activities.renewal_loop)
            outer.start_soon(self.heartbeat.run)
            outer.start_soon(self._orchestrations.renewal_loop)
            if self.options.janitor_interval is not None:
                outer.start_soon(self._janitor_loop, self.options.janitor_interval)
            if handle_signals:
                outer.start_soon(self._signal_loop)
            outer.start_soon(self._on_stop_release_idle, stopping)
            jobs = self._jobs.enabled
            if jobs:
                outer.start_soon(self._jobs.ack_loop)
                outer.start_soon(self._jobs.renewal_loop)
            async with anyio.create_task_group() as items:
                async with anyio.create_task_group() as fetchers:
                    for _ in range(self.options.orchestration_concurrency):
                        fetchers.start_soon(self._orchestrations.fetch_loop, stopping)
                    fetchers.start_soon(self._activities.fetch_loop, stopping, items)
                    if jobs:
                        fetchers.start_soon(self._jobs.fetch_loop, stopping)
                    if self._schedules.enabled:
                        fetchers.start_soon(self._schedules.loop, stopping)
                remaining = self._grace_period
                if self._deadline is not None:
                    remaining = max(0.0, self._deadline - anyio.current_time())
                async with anyio.create_task_group() as drains:
                    drains.start_soon(self._activities.drain, remaining)
                    if jobs:
                        drains.start_soon(self._jobs.drain, remaining)
                items.cancel_scope.cancel()
            outer.cancel_scope.cancel()
        with anyio.CancelScope(shield=True, deadline=anyio.current_time() + 2.0):
            await self.heartbeat.remove()  # bounded: a dead Redis must not hold up the exit
        logger.info("worker %s stopped", self.worker_id, extra={"worker_id": self.worker_id})

    async def _on_stop_release_idle(self, stopping: anyio.Event) -> None:
        await stopping.wait()
        try:
            await self.sessions.release_idle()
        except Exception:
            logger.exception("releasing idle sessions at shutdown failed")

    async def _signal_loop(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            logger.warning("signal handling needs the main thread; not installing handlers")
            return
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                if self._stopping is not None and self._stopping.is_set():
                    logger.warning("second signal %s: handing back in-flight work now", signum)
                    self._grace_period = 0.0
                    self._deadline = anyio.current_time()
                else:
                    logger.info("signal %s received", signum)
                    self._begin_stop()

    async def _janitor_loop(self, interval: float) -> None:
        # Jittered so that many workers do not all sweep at once; the sweep itself is idempotent.
        await anyio.sleep(random.uniform(0.1, 1.0) * interval)
        while True:
            try:
                removed = 0
                for _ in range(10):
                    n = await self.store.run_janitor(
                        retention_ms=self.options.retention_ms, batch=self.options.janitor_batch
                    )
                    removed += n
                    if n < self.options.janitor_batch:
                        break
                if removed:
                    logger.info("janitor removed %d expired instances", removed)
            except Exception:
                logger.exception("janitor run failed")
            await anyio.sleep(random.uniform(0.75, 1.25) * interval)

    # -- introspection (tests, metrics) --------------------------------------------------------
    @property
    def activities_in_flight(self) -> int:
        return self._activities.in_flight

    @property
    def jobs_in_flight(self) -> int:
        return self._jobs.in_flight

    @property
    def turns_in_flight(self) -> int:
        return self._orchestrations.in_flight

    def __repr__(self) -> str:
        return f"Worker(worker_id={self.worker_id!r})"


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first
