"""``TestEnvironment``: the production engine in a test, on a virtual clock (docs/testing.md).

Imported lazily by ``durable_redis.testing`` (which stays free of Redis and anyio); the
pieces:

- stores built with ``test_clock=True`` (``storage/test_clock.py``) on a namespace this
  environment creates, so the Lua scripts and the Python runtime share one virtual clock;
- the real ``Worker`` (dispatchers, sessions, Lua) in this event loop, serving an ``App``
  proxy that applies the test's mocks and injected faults to activities;
- auto-skip: while the test waits on a result, whenever nothing is runnable and no live
  worker holds work, the clock jumps to the next due time (a timer, a retry back-off, the
  lease of a worker a crash was injected into).
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import anyio
import anyio.abc
import anyio.lowlevel

from durable_redis._testfaults import (
    MISSING,
    ActivityFault,
    ActivityOverrides,
    OverridingApp,
    activity_name,
)
from durable_redis.client import Client, InstanceState
from durable_redis.core import App
from durable_redis.devtools.server import RedisServer
from durable_redis.errors import ConfigurationError
from durable_redis.runtime import Worker, WorkerOptions
from durable_redis.storage.redis_store import RedisStore
from durable_redis.storage.test_clock import QuietView

__all__ = ["ActivityFault", "SyncTestEnvironment", "TestEnvironment"]

logger = logging.getLogger(__name__)

Backend = Literal["redis", "fakeredis"]
_POLL_S = 0.01  # auto-skip looks this often while a wait is on
_SETTLE_LOOKS = 2  # consecutive quiet looks before a jump (a fetch between two commands)

DEFAULT_OPTIONS = WorkerOptions(
    fetch_wait=0.5,  # bounds a graceful stop (deploy); an idle fetch looks again this often
    shutdown_grace_period=1.0,
    janitor_interval=None,
)


class _Slot:
    """One in-process worker: its store, its cancel scope (a crash cancels it), its task."""

    def __init__(self, worker: Worker, store: RedisStore) -> None:
        self.worker = worker
        self.store = store
        self.scope = anyio.CancelScope()
        self.done = anyio.Event()
        self.crashed = False


class _EnvClient(Client):
    """A Client whose result waits let the clock auto-skip (Temporal's time-skipping rule)."""

    env: TestEnvironment

    async def wait_for_state(
        self,
        instance_id: str,
        *,
        timeout: float | timedelta | None = None,
        result_type: Any = None,
    ) -> InstanceState:
        async with self.env.auto_skipping():
            return await super().wait_for_state(
                instance_id, timeout=timeout, result_type=result_type
            )

    def _job_store(self) -> Any:
        return _WaitingJobs(self.store, self.env)


class _WaitingJobs:
    """The client's store, with job result waits that let the clock auto-skip too."""

    def __init__(self, store: Any, env: TestEnvironment) -> None:
        self._store = store
        self._env = env

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def wait_job_ended(self, job_id: str, timeout_s: float) -> Any:
        async with self._env.auto_skipping():
            return await self._store.wait_job_ended(job_id, timeout_s)


class TestEnvironment:
    """The real worker code, in this event loop, against a private Redis, on a virtual clock.

    ::

        async with TestEnvironment(app) as env:
            handle = await env.client.start(monthly_invoice, "acme")
            assert await env.client.wait_for_completion(handle, timeout=10) == "sent"

    - ``backend``: ``"redis"`` (default: the embedded ``redis-server``, AOF on, started for
      this environment unless ``redis_url`` names one) or ``"fakeredis"`` (no process).
    - ``auto_skip``: while a test waits on a result through ``env.client``, jump the clock to
      the next due time whenever nothing can run now; ``env.skip(delta)`` always works.
    - ``workers``: in-process workers (each with its own id, like separate processes).
    - ``mocks``: ``{activity or its name: replacement}``, as :meth:`mock_activity`.
    - ``start_time``: the virtual clock starts there (timezone-aware; past or future).
    - ``worker_options`` / ``partitions`` / ``namespace``: passed on.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        app: App,
        *,
        backend: Backend = "redis",
        redis_url: str | None = None,
        namespace: str | None = None,
        partitions: int | None = None,
        workers: int = 1,
        worker_options: WorkerOptions | None = None,
        auto_skip: bool = True,
        mocks: dict[str | Callable[..., Any], Any] | None = None,
        start_time: datetime | None = None,
    ) -> None:
        if backend not in ("redis", "fakeredis"):
            raise ConfigurationError(f"backend must be 'redis' or 'fakeredis', not {backend!r}")
        if backend == "fakeredis" and redis_url is not None:
            raise ConfigurationError("redis_url is for backend='redis'")
        if workers < 0:
            raise ConfigurationError("workers must be >= 0")
        if start_time is not None and start_time.tzinfo is None:
            raise ConfigurationError("start_time must be timezone-aware")
        self._start_time = start_time
        self.app = app
        self.backend = backend
        self.namespace = namespace or f"test-{uuid.uuid4().hex[:12]}"
        self.auto_skip = auto_skip
        self.worker_options = worker_options or DEFAULT_OPTIONS
        self._redis_url = redis_url
        self._partitions = partitions
        self._worker_count = workers
        self._server: RedisServer | None = None
        self._fake_server: Any = None
        self._stores: list[RedisStore] = []
        self._slots: list[_Slot] = []
        self._dead: set[str] = set()  # ids of the workers a test killed
        self._dead_tags: set[str] = set()  # the lock tags of their stores
        self._waiters = 0
        self._tg: anyio.abc.TaskGroup | None = None
        self._overrides = ActivityOverrides(self._kill)
        self._env_app = OverridingApp(app, self._overrides)
        self._client: _EnvClient | None = None
        self.control: RedisStore | None = None
        for target, replacement in (mocks or {}).items():
            self._overrides.mocks[activity_name(target)] = replacement

    # -- lifecycle -----------------------------------------------------------------------------
    async def __aenter__(self) -> TestEnvironment:
        try:
            return await self._enter()
        except BaseException:
            await self.__aexit__(None, None, None)  # whatever was started: stopped by its pid
            raise

    async def _enter(self) -> TestEnvironment:
        self._overrides.bind()
        if self.backend == "redis" and self._redis_url is None:
            self._server = await anyio.to_thread.run_sync(RedisServer(persistence=True).start)
        elif self.backend == "fakeredis":
            import fakeredis

            self._fake_server = fakeredis.FakeServer()
        self.control = await self._store()
        if self._start_time is not None:
            real = await self.control.server_time_ms()
            start = round(self._start_time.timestamp() * 1000)
            await self.control.set_test_clock_origin(start - real)
        client = _EnvClient(await self._store(), self._env_app)
        client.env = self
        self._client = client
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        for _ in range(self._worker_count):
            await self.start_worker()
        self._tg.start_soon(self._auto_skip_loop)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # The namespace is thrown away: no graceful hand-back, the workers are cancelled
        # (stop_workers() is the graceful stop, the one deploy() does)
        self._overrides.release()
        try:
            if self._tg is not None:
                self._tg.cancel_scope.cancel()
                await self._tg.__aexit__(None, None, None)
                self._tg = None
        finally:
            with anyio.CancelScope(shield=True):
                for store in self._stores:
                    await store.close()
                if self._server is not None:
                    await anyio.to_thread.run_sync(self._server.stop)
                    self._server = None

    @property
    def client(self) -> Client:
        """A Client on the environment's namespace; its result waits let the clock skip."""
        if self._client is None:
            raise ConfigurationError("enter the environment first (async with TestEnvironment)")
        return self._client

    @property
    def redis_url(self) -> str | None:
        """The URL of the Redis this environment runs on (None for fakeredis)."""
        if self._server is not None:
            return self._server.url
        return self._redis_url

    async def _store(self) -> RedisStore:
        options: dict[str, Any] = {
            "namespace": self.namespace,
            "partitions": self._partitions,
            "test_clock": True,
        }
        if self.backend == "fakeredis":
            import fakeredis

            raw = fakeredis.FakeAsyncRedis(server=self._fake_server)
            store = RedisStore(raw, owns_client=True, **options)
        else:
            url = self.redis_url
            assert url is not None
            store = RedisStore.from_url(url, **options)
        await store.initialize()
        self._stores.append(store)
        return store

    # -- workers -------------------------------------------------------------------------------
    @property
    def workers(self) -> list[Worker]:
        """The live workers."""
        return [s.worker for s in self._slots if not s.crashed and not s.done.is_set()]

    async def start_worker(self, options: WorkerOptions | None = None) -> Worker:
        """Start one more in-process worker (a new worker id, as a new process would have)."""
        assert self._tg is not None, "use the environment with `async with`"
        store = await self._store()
        worker = Worker(self._env_app, store, options or self.worker_options, clock=self._monotonic)
        slot = _Slot(worker, store)
        self._slots.append(slot)
        self._tg.start_soon(self._run_slot, slot)
        with anyio.fail_after(10):
            while not worker.is_running and not slot.done.is_set():
                await anyio.sleep(0.005)
        return worker

    async def _run_slot(self, slot: _Slot) -> None:
        try:
            with slot.scope:
                await slot.worker.run()
        finally:
            slot.done.set()

    async def stop_workers(self) -> None:
        """Stop every live worker gracefully (what a deploy does) and wait for them."""
        live = [s for s in self._slots if not s.crashed and not s.done.is_set()]
        for slot in live:  # an idle fetch notices within fetch_wait
            slot.worker.stop(grace_period=self.worker_options.shutdown_grace_period)
        with anyio.fail_after(30):
            for slot in live:
                await slot.done.wait()

    async def deploy(self, app: App, *, workers: int | None = None) -> None:
        """Roll out new code: stop the workers gracefully, then start ``workers`` (default as
        many as before) serving ``app``. Instances in flight carry on under the new code."""
        count = len(self.workers) if workers is None else workers
        await self.stop_workers()
        self.app = app
        self._env_app = OverridingApp(app, self._overrides)
        self.client.app = self._env_app
        for _ in range(count):
            await self.start_worker()

    def _kill(self, worker_id: str) -> None:
        if worker_id not in self._dead:
            self.crash_worker(worker_id)

    def crash_worker(self, worker: Worker | str | None = None) -> str:
        """Kill a worker as SIGKILL would: nothing handed back, nothing released. Its leases
        expire on the virtual clock and its work is redelivered; a new worker takes its place.
        Returns the dead worker's id."""
        live = [s for s in self._slots if not s.crashed and not s.done.is_set()]
        wanted = worker.worker_id if isinstance(worker, Worker) else worker
        slot = next((s for s in live if wanted in (None, s.worker.worker_id)), None)
        if slot is None:
            raise ConfigurationError(f"no live worker {wanted!r} in this environment")
        slot.crashed = True
        self._dead.add(slot.worker.worker_id)
        self._dead_tags.add(slot.store.lock_tag)  # the instance locks it takes, even now
        slot.scope.cancel()
        logger.info("test environment: worker %s crashed (injected)", slot.worker.worker_id)
        assert self._tg is not None
        self._tg.start_soon(self.start_worker)
        return slot.worker.worker_id

    # -- the clock -----------------------------------------------------------------------------
    def _monotonic(self) -> float:
        """Monotonic seconds that jump with the virtual clock (the session idle timeout)."""
        assert self.control is not None
        return time.monotonic() + self.control.test_clock_offset_ms / 1000.0

    async def now(self) -> datetime:
        """The virtual time (what ``ctx.now()``, timers and leases are judged by)."""
        assert self.control is not None
        return datetime.fromtimestamp(await self.control.server_time_ms() / 1000.0, UTC)

    async def skip(self, delta: timedelta | float, *, settle: float = 5.0) -> datetime:
        """Move the virtual clock forward by ``delta`` (a timedelta or seconds); returns the
        new virtual time.

        Time moves in steps, from one due time to the next (a timer, a back-off, a schedule
        tick, a dead worker's lease), each step once the work it woke has settled, so what
        comes due meanwhile runs at its time, in order, as it would have. Work still running
        after ``settle`` wall seconds does not hold the clock up: its lease expires if the
        skip outlasts it, as if its worker had stalled that long.
        """
        seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
        if seconds < 0:
            raise ConfigurationError("the virtual clock only moves forward")
        assert self.control is not None
        target = await self.control.server_time_ms() + round(seconds * 1000)
        while True:
            view = await self._settled(settle)
            if view.now_ms >= target:
                return await self.now()
            step = target
            if view.busy is None and view.next_due_ms is not None:
                step = min(step, view.next_due_ms)
            await self._advance(max(1, step - view.now_ms))

    async def _settled(self, bound_s: float) -> QuietView:
        """The view once nothing can run (two quiet looks in a row), or after ``bound_s``."""
        looks = 0
        view = await self.quiet()
        with anyio.move_on_after(bound_s):
            while True:
                looks = looks + 1 if view.busy is None else 0
                if looks >= _SETTLE_LOOKS:
                    break
                await anyio.sleep(_POLL_S)
                view = await self.quiet()
        return view

    def _wake_keys(self) -> list[str]:
        assert self.control is not None
        return [
            pk.wq_wake(s.worker.worker_id)
            for s in self._slots
            if not s.crashed
            for pk in self.control._parts
        ]

    async def _advance(self, ms: int) -> None:
        assert self.control is not None
        offset = await self.control.advance_test_clock(ms, wake=self._wake_keys())
        for store in self._stores:
            store.note_test_clock(offset)

    async def quiet(self) -> QuietView:
        """Whether anything can run now; if not, when something next becomes due."""
        assert self.control is not None
        now = await self.control.server_time_ms()
        busy = [w for w in self.workers if w.turns_in_flight or w.activities_in_flight]
        busy += [w for w in self.workers if w.jobs_in_flight]
        if busy:
            return QuietView(now, f"worker {busy[0].worker_id} is running work", None)
        return await self.control.quiet_view(now, self._dead, self._dead_tags)

    async def run_until_idle(self, *, timeout: float = 10.0, skip: bool = False) -> None:
        """Wait (wall ``timeout``) until nothing can run now (arq's ``burst``); ``skip=True``
        also jumps over every timer until none is left."""
        with anyio.fail_after(timeout):
            while True:
                view = await self._settled(timeout)
                if view.busy is not None:
                    continue  # fail_after ends it
                if not skip or view.next_due_ms is None:
                    return
                await self._advance(max(1, view.next_due_ms - view.now_ms))

    def _skipping(self) -> bool:
        return self.auto_skip and self._waiters > 0

    async def _auto_skip_loop(self) -> None:
        while True:
            await anyio.sleep(_POLL_S)
            if not self._skipping():
                continue
            try:
                view = await self._settled(5 * _POLL_S)
            except Exception:  # a Redis restart in progress, say: look again
                logger.debug("auto-skip: look failed", exc_info=True)
                continue
            if self._skipping() and view.busy is None and view.next_due_ms is not None:
                await self._advance(max(1, view.next_due_ms - view.now_ms))

    @contextmanager
    def auto_skip_disabled(self) -> Iterator[None]:
        """No auto-skip inside the block (Temporal's ``auto_time_skipping_disabled``)."""
        previous, self.auto_skip = self.auto_skip, False
        try:
            yield
        finally:
            self.auto_skip = previous

    @asynccontextmanager
    async def auto_skipping(self) -> AsyncIterator[None]:
        """Let the clock auto-skip inside the block (``env.client`` waits do it anyway)."""
        self._waiters += 1
        try:
            yield
        finally:
            self._waiters -= 1

    # -- mocks -----------------------------------------------------------------------------------
    def mock_activity(
        self,
        activity: str | Callable[..., Any],
        replacement: Callable[..., Any] | None = None,
        *,
        returns: Any = MISSING,
        raises: BaseException | None = None,
    ) -> AbstractContextManager[None]:
        """Replace an activity (by reference or name) inside the ``with`` block.

        ``replacement`` takes what the activity takes (``ctx`` and its input, if any), sync or
        async; or give ``returns=`` a value or ``raises=`` an exception. Workers look it up at
        each delivery, so it applies to work already queued.
        """
        return self._overrides.mock(activity, replacement, returns=returns, raises=raises)

    # -- faults ----------------------------------------------------------------------------------
    def crash_after(
        self, activity: str | Callable[..., Any], *, times: int | None = 1, at_start: bool = False
    ) -> ActivityFault:
        """Kill the worker running ``activity`` once its body has returned, before the result
        is recorded (``at_start=True``: as it starts): the worst moment for at-least-once. The
        lease expires on the virtual clock and the activity is delivered again; an activity
        whose side effect is not idempotent does it twice. ``times`` deliveries (None: all)."""
        return self._overrides.add_fault(
            activity, "crash_at_start" if at_start else "crash_after", times
        )

    def deliver_twice(
        self, activity: str | Callable[..., Any], *, times: int | None = 1
    ) -> ActivityFault:
        """Run ``activity`` twice in a row per delivery, the second result recorded: the cheap
        form of a redelivery (no crash, no lease to wait out)."""
        return self._overrides.add_fault(activity, "deliver_twice", times)

    def clear_faults(self) -> None:
        self._overrides.faults.clear()

    async def expire_session(self, instance_id: str, session_id: str) -> None:
        """End a session's lease now, as if its worker had stopped renewing it: the worker
        holding it loses it (in-flight session activities are cancelled, its in-memory state
        is gone) and the session's next work is claimed anew."""
        assert self.control is not None
        await self.control.expire_session_lease(instance_id, session_id)

    async def restart_redis(self) -> None:
        """Restart the embedded Redis (SIGTERM, then start it on the same data; AOF on):
        workers and client reconnect. Only for the server this environment started."""
        server = self._server
        if server is None or server.process is None:
            raise ConfigurationError("restart_redis needs the Redis this environment started")
        proc = server.process

        def restart() -> None:
            proc.terminate()
            proc.wait(timeout=10)
            if proc.stderr:
                proc.stderr.close()
            server.process = None
            server.start()

        await anyio.to_thread.run_sync(restart)


class _Blocking:
    """Calls ``obj``'s coroutine methods through a blocking portal; other attributes as is."""

    def __init__(self, obj: Any, portal: Any) -> None:
        self._obj = obj
        self._portal = portal

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._obj, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._portal.call(functools.partial(attr, *args, **kwargs))

        return call


class SyncTestEnvironment:
    """:class:`TestEnvironment` for code and tests that are not async: the environment runs on
    an event loop in a background thread; ``env.client`` and the environment's own coroutine
    methods block instead of being awaited::

        with SyncTestEnvironment(app, backend="fakeredis") as env:
            handle = env.client.start(monthly_invoice, "acme")
            assert env.client.wait_for_completion(handle, timeout=10) == "invoice sent to acme"
            env.skip(timedelta(days=1))

    Takes the arguments of :class:`TestEnvironment`; ``mock_activity``, ``crash_after`` and the
    other plain methods work unchanged.
    """

    __test__ = False

    def __init__(self, app: App, **options: Any) -> None:
        self.env = TestEnvironment(app, **options)
        self._portal_cm: Any = None
        self._env_cm: Any = None
        self._portal: Any = None

    def __enter__(self) -> SyncTestEnvironment:
        self._portal_cm = anyio.from_thread.start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        try:
            self._env_cm = self._portal.wrap_async_context_manager(self.env)
            self._env_cm.__enter__()
        except BaseException:
            self._portal_cm.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        try:
            self._env_cm.__exit__(*exc_info)
        finally:
            self._portal_cm.__exit__(None, None, None)

    @property
    def auto_skip(self) -> bool:
        return self.env.auto_skip

    @auto_skip.setter
    def auto_skip(self, value: bool) -> None:
        self.env.auto_skip = value

    @property
    def client(self) -> Any:
        """``env.client`` with blocking methods."""
        return _Blocking(self.env.client, self._portal)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(_Blocking(self.env, self._portal), name)
