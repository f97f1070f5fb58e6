"""``OrchestrationContext``: everything orchestration code may do, all of it recorded in history.

Every operation records its command at once (when called, not when awaited) and returns an
``asyncio.Future`` of the private deterministic loop, so the standard asyncio combinators work.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random as _random
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, MutableMapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeVar, overload

from durable_redis.core import events as ev
from durable_redis.core.codec import Codec
from durable_redis.core.loop import DeterministicLoop
from durable_redis.core.registry import (
    ActivityContext,
    App,
    activity_metadata,
    orchestration_metadata,
)
from durable_redis.core.retry import RetryPolicy, to_ms
from durable_redis.errors import (
    ActivityTimeoutError,
    FailureDetails,
    InvalidIdError,
    NotRegisteredError,
    TaskFailedError,
    ValidationError,
)
from durable_redis.ids import SESSION, default_child_id

if TYPE_CHECKING:
    from durable_redis.core.jobs import Limit

__all__ = [
    "MAX_SESSION_ID_LENGTH",
    "MAX_VALUE_BYTES",
    "MAX_VALUE_KEYS",
    "EngineOps",
    "OrchestrationContext",
    "ReplaySafeLogger",
]

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741 - input type
R = TypeVar("R")

MAX_SESSION_ID_LENGTH = SESSION.max_bytes

Route = tuple[str | None, int | None, str | None, str | None]
"""An activity call's (queue, priority, flow key, flow limits), as recorded (None: default)."""
NO_ROUTE: Route = (None, None, None, None)
MAX_VALUE_KEYS = 128
"""Keys of one instance's key-value state (``ctx.set_value``)."""
MAX_VALUE_BYTES = 64 * 1024
"""Encoded size of one value of the key-value state."""


def _check_name(value: object, what: str) -> None:
    """Names become parts of storage keys and ids: 1..256 bytes, no newline or NUL."""
    ok = isinstance(value, str) and 0 < len(value.encode("utf-8", "replace")) <= 256
    if not ok or "\n" in str(value) or "\x00" in str(value):
        raise InvalidIdError(f"invalid {what} {value!r}: 1..256 bytes, without newline or NUL")


class ReplaySafeLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger adapter that is silent while the orchestration replays its history."""

    def __init__(self, logger: logging.Logger, ctx: OrchestrationContext) -> None:
        super().__init__(logger, {"instance_id": ctx.instance_id})
        self._ctx = ctx

    def isEnabledFor(self, level: int) -> bool:
        return not self._ctx.is_replaying and self.logger.isEnabledFor(level)

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


_E = TypeVar("_E", bound=ev.HistoryEvent)


class EngineOps(Protocol):
    """What the context asks of the engine of its turn: the whole edge, in one place.

    ``core.engine.ReplayEngine`` implements it (checked by mypy where the engine builds its
    context); the context imports nothing of the engine, as Temporal's ``workflow._Runtime``.
    """

    @property
    def app(self) -> App: ...
    @property
    def loop(self) -> DeterministicLoop: ...
    @property
    def codec(self) -> Codec: ...
    @property
    def current_ms(self) -> int: ...
    @property
    def cursor(self) -> int: ...
    @property
    def next_event_id(self) -> int: ...
    @property
    def default_id(self) -> str: ...
    @property
    def is_replaying(self) -> bool: ...
    @property
    def last_activity_id(self) -> int: ...
    @property
    def max_sessions(self) -> int: ...
    @property
    def suggest_at(self) -> int: ...
    @property
    def trace(self) -> dict[str, str] | None: ...
    @property
    def open_sessions(self) -> set[str]: ...
    @property
    def value_keys(self) -> set[str]: ...
    @property
    def update_handlers(
        self,
    ) -> dict[str, tuple[Callable[..., Any], Callable[..., Any] | None]]: ...

    def command(self, cls: type[_E], **fields: Any) -> _E: ...
    def terminate(self, cls: type[_E], **fields: Any) -> NoReturn: ...
    def patched(self, change_id: str, *, deprecated: bool) -> bool: ...
    def create_timer(self, fire_at_ms: int) -> asyncio.Future[None]: ...
    def wait_for_event(self, name: str, result_type: Any) -> asyncio.Future[Any]: ...
    def dequeue_event(self, queue: str, result_type: Any) -> asyncio.Future[Any]: ...
    def schedule_activity(
        self,
        name: str,
        payload: bytes,
        session: str | None,
        attempt: int,
        timeout_ms: int | None,
        result_type: Any,
        first_attempt_id: int | None = None,
        local: bool = False,
        route: Route = NO_ROUTE,
    ) -> asyncio.Future[Any]: ...
    def schedule_child(
        self, name: str, version: str, child_id: str, payload: bytes, result_type: Any
    ) -> asyncio.Future[Any]: ...
    def check_session_use(self, session_id: str) -> None: ...
    def session_queue(self, session_id: str, wanted: str | None, *, explicit: bool) -> str: ...
    def open_session(
        self, session_id: str, *, explicit: bool, queue: str | None = None
    ) -> asyncio.Future[str]: ...
    def close_session(self, session_id: str) -> asyncio.Future[None]: ...


class OrchestrationContext:
    """Passed as the first argument of every orchestration. Deterministic by construction."""

    def __init__(self, engine: EngineOps, started: ev.OrchestrationStarted) -> None:
        self._engine = engine
        self._started = started
        self._loop = engine.loop
        # seeded at the first ctx.random(): seeding a Mersenne Twister costs ~7 µs, and most
        # orchestrations never draw from it (a context is made for every replay)
        self._random: _random.Random | None = None
        self._uuid_counter = 0
        self.logger = ReplaySafeLogger(logging.getLogger("durable_redis.orchestration"), self)

    # -- identity and deterministic helpers -----------------------------------------------------
    @property
    def instance_id(self) -> str:
        return self._started.instance_id

    @property
    def execution_id(self) -> int:
        return self._started.execution_id

    @property
    def name(self) -> str:
        return self._started.name

    @property
    def version(self) -> str:
        return self._started.version

    @property
    def parent_instance_id(self) -> str | None:
        return self._started.parent_instance_id

    @property
    def is_replaying(self) -> bool:
        """True while the code re-executes steps already in the history."""
        return self._engine.is_replaying

    @property
    def max_sessions_per_orchestration(self) -> int:
        return self._engine.max_sessions

    @property
    def open_sessions(self) -> frozenset[str]:
        return frozenset(self._engine.open_sessions)

    def now(self) -> datetime:
        """The time of the step being executed (recorded, so identical on replay), UTC."""
        return datetime.fromtimestamp(self._engine.current_ms / 1000, tz=UTC)

    def new_uuid(self) -> uuid.UUID:
        """A UUID derived from the instance, execution and call count: the same on replay."""
        self._uuid_counter += 1
        key = f"{self.instance_id}:{self.execution_id}:{self._uuid_counter}".encode()
        return uuid.UUID(bytes=hashlib.sha256(key).digest()[:16], version=4)

    def random(self) -> float:
        """A float in [0, 1) from a generator seeded by the instance and execution."""
        if self._random is None:
            key = f"{self._started.instance_id}:{self._started.execution_id}".encode()
            seed = hashlib.sha256(key).digest()
            self._random = _random.Random(int.from_bytes(seed[:8], "big"))
        return self._random.random()

    # -- activities -----------------------------------------------------------------------------
    @overload
    def call_activity(
        self,
        activity: Callable[[ActivityContext, I], Coroutine[Any, Any, R]],
        input: I,
        *,
        retry: RetryPolicy | None = None,
        session: str | None = None,
        timeout: timedelta | float | None = None,
        queue: str | None = None,
        priority: int = 0,
        limit: Limit | None = None,
    ) -> asyncio.Future[R]: ...

    @overload
    def call_activity(
        self,
        activity: Callable[[ActivityContext, I], R],
        input: I,
        *,
        retry: RetryPolicy | None = None,
        session: str | None = None,
        timeout: timedelta | float | None = None,
        queue: str | None = None,
        priority: int = 0,
        limit: Limit | None = None,
    ) -> asyncio.Future[R]: ...

    @overload
    def call_activity(
        self,
        activity: Callable[[ActivityContext], Coroutine[Any, Any, R]],
        input: None = None,
        *,
        retry: RetryPolicy | None = None,
        session: str | None = None,
        timeout: timedelta | float | None = None,
        queue: str | None = None,
        priority: int = 0,
        limit: Limit | None = None,
    ) -> asyncio.Future[R]: ...

    @overload
    def call_activity(
        self,
        activity: Callable[[ActivityContext], R],
        input: None = None,
        *,
        retry: RetryPolicy | None = None,
        session: str | None = None,
        timeout: timedelta | float | None = None,
        queue: str | None = None,
        priority: int = 0,
        limit: Limit | None = None,
    ) -> asyncio.Future[R]: ...

    @overload
    def call_activity(
        self,
        activity: str,
        input: Any = None,
        *,
        retry: RetryPolicy | None = None,
        session: str | None = None,
        timeout: timedelta | float | None = None,
        queue: str | None = None,
        priority: int = 0,
        limit: Limit | None = None,
    ) -> asyncio.Future[Any]: ...

    def call_activity(
        self,
        activity: str | Callable[..., Any],
        input: Any = None,
        *,
        retry: RetryPolicy | None = None,
        session: str | None = None,
        timeout: timedelta | float | None = None,
        queue: str | None = None,
        priority: int = 0,
        limit: Limit | None = None,
    ) -> asyncio.Future[Any]:
        """Schedule an activity: by function, typed from its annotations (a wrong input type is
        a type error, the result has the function's return type); by name, ``Any``.

        ``retry`` retries failed attempts with durable back-off timers; ``timeout`` (or
        ``retry.timeout``) bounds each attempt; ``session`` pins it to an open session's worker.
        ``queue`` (else the activity's registered queue, else ``"default"``) routes it to the
        workers serving that queue; on a session, the session's queue applies (docs/routing.md).
        ``priority`` (range +-32767): higher first within its queue, FIFO within a level.
        ``limit`` (else the activity's registered ``limit``): flow control by key, its
        ``concurrency`` and ``rate`` (docs/routing.md; not on a session, no debounce/throttle).
        Failures raise ``ActivityFailedError`` / ``ActivityTimeoutError`` when awaited.
        """
        queue_, priority_ = self._route(activity, session, queue, priority)
        route: Route = (queue_, priority_, *self._flow(activity, input, session, limit))
        return self._call_activity(
            activity, input, retry, session, timeout, local=False, route=route
        )

    @overload
    def call_local_activity(
        self,
        activity: Callable[[ActivityContext, I], Coroutine[Any, Any, R]],
        input: I,
        *,
        retry: RetryPolicy | None = None,
        timeout: timedelta | float | None = None,
    ) -> asyncio.Future[R]: ...

    @overload
    def call_local_activity(
        self,
        activity: Callable[[ActivityContext, I], R],
        input: I,
        *,
        retry: RetryPolicy | None = None,
        timeout: timedelta | float | None = None,
    ) -> asyncio.Future[R]: ...

    @overload
    def call_local_activity(
        self,
        activity: Callable[[ActivityContext], Coroutine[Any, Any, R]],
        input: None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: timedelta | float | None = None,
    ) -> asyncio.Future[R]: ...

    @overload
    def call_local_activity(
        self,
        activity: Callable[[ActivityContext], R],
        input: None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: timedelta | float | None = None,
    ) -> asyncio.Future[R]: ...

    def call_local_activity(
        self,
        activity: Callable[..., Any],
        input: Any = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: timedelta | float | None = None,
    ) -> asyncio.Future[Any]:
        """Run an activity inside this turn, in the worker executing it (no dispatch round
        trip): its result is recorded in the turn's commit, and replay uses the recorded result.
        If the turn is lost before its commit, the activity runs again (at least once), so keep
        it short and idempotent. ``retry`` back-off uses durable timers, as for
        ``call_activity``; ``timeout`` (or ``retry.timeout``) bounds each attempt (the worker
        stops waiting; a timed-out attempt fails with ``ActivityTimeoutError``). Sessions and
        queue routing do not apply. Failures raise ``ActivityFailedError`` when awaited.
        """
        return self._call_activity(activity, input, retry, None, timeout, local=True)

    def _call_activity(
        self,
        activity: str | Callable[..., Any],
        input: Any,
        retry: RetryPolicy | None,
        session: str | None,
        timeout: timedelta | float | None,
        *,
        local: bool,
        route: Route = NO_ROUTE,
    ) -> asyncio.Future[Any]:
        if isinstance(activity, str):
            name, result_type = activity, Any
        else:
            definition = activity_metadata(activity)
            name, result_type = definition.name, definition.result_type
        timeout_ms = to_ms(timeout) if timeout is not None else None
        if timeout_ms is None and retry is not None:
            timeout_ms = retry.timeout_ms
        if session is not None:
            self._engine.check_session_use(session)
        payload = self._engine.codec.encode(input)
        engine = self._engine
        first = engine.schedule_activity(
            name, payload, session, 1, timeout_ms, result_type, local=local, route=route
        )
        if retry is None and (timeout_ms is None or local):
            return first
        first_id = engine.last_activity_id
        policy = retry if retry is not None else RetryPolicy(max_attempts=1)

        async def attempts() -> Any:
            attempt, future = 1, first
            while True:
                try:
                    if timeout_ms is None or local:  # a local attempt's timeout is the worker's
                        return await future
                    return await self._with_timeout(future, timeout_ms, name)
                except TaskFailedError as exc:
                    if attempt >= policy.max_attempts or not policy.is_retryable(exc.details):
                        raise
                    self.logger.info(
                        "activity %s attempt %d failed (%s); retrying", name, attempt, exc.details
                    )
                delay_ms = policy.delay_ms(attempt)
                if delay_ms > 0:
                    await engine.create_timer(engine.current_ms + delay_ms)
                attempt += 1
                future = engine.schedule_activity(
                    name,
                    payload,
                    session,
                    attempt,
                    timeout_ms,
                    result_type,
                    first_id,
                    local=local,
                    route=route,
                )

        return self._loop.create_task(attempts(), name=f"activity:{name}")

    def _route(
        self,
        activity: str | Callable[..., Any],
        session: str | None,
        queue: str | None,
        priority: int,
    ) -> tuple[str | None, int | None]:
        """The (queue, priority) an activity call is recorded with (None: the default)."""
        from durable_redis.core.jobs import MAX_PRIORITY, validate_queue

        if queue is not None:
            validate_queue(queue)
        if (
            not isinstance(priority, int)
            or isinstance(priority, bool)
            or abs(priority) > MAX_PRIORITY
        ):
            raise ValidationError(
                f"priority must be an int within +-{MAX_PRIORITY}, got {priority!r}"
            )
        chosen = queue if queue is not None else self._registered_queue(activity)
        if session is not None:
            chosen = self._engine.session_queue(session, chosen, explicit=queue is not None)
        if chosen == "default":
            chosen = None
        return chosen, (priority or None)

    def _flow(
        self,
        activity: str | Callable[..., Any],
        input: Any,
        session: str | None,
        limit: Limit | None,
    ) -> tuple[str | None, str | None]:
        """The (flow key, limits) an activity call is recorded with: the call's ``limit``, else
        the activity's registered one (not on a session: session work is not flow-controlled).
        """
        from durable_redis.core.jobs import Limit

        if limit is not None:
            if not isinstance(limit, Limit):
                raise ValidationError(f"limit must be a Limit, got {limit!r}")
            if session is not None:
                raise ValidationError("a call on a session takes no limit (its worker is fixed)")
            if limit.mode:
                raise ValidationError("an activity call's limit takes no debounce or throttle")
        elif session is None:
            limit = self._registered_limit(activity)
        if limit is None or (limit.concurrency is None and limit.rate is None and limit.mode):
            return None, None  # a registered debounce / throttle only: for its jobs
        return limit.key_for(input), limit.flow

    def _registered_limit(self, activity: str | Callable[..., Any]) -> Limit | None:
        if not isinstance(activity, str):
            return activity_metadata(activity).limit
        try:
            return self._engine.app.get_activity(activity).limit
        except NotRegisteredError:
            return None

    def _registered_queue(self, activity: str | Callable[..., Any]) -> str | None:
        """The queue ``@app.activity(queue=)`` gave the activity (by name: as this worker's
        app registers it; unknown here: None)."""
        if not isinstance(activity, str):
            return activity_metadata(activity).queue
        try:
            return self._engine.app.get_activity(activity).queue
        except NotRegisteredError:  # not in this app: the call's queue, else "default"
            return None

    async def _with_timeout(self, future: asyncio.Future[T], timeout_ms: int, name: str) -> T:
        timer = self._engine.create_timer(self._engine.current_ms + timeout_ms)
        racers: list[asyncio.Future[Any]] = [future, timer]
        first = self._first_of(racers, cancel_losers=False)
        try:
            await first
        except BaseException:
            future.cancel()
            timer.cancel()
            raise
        if future.done():
            timer.cancel()
            return future.result()
        future.cancel()
        details = FailureDetails(
            kind="timeout",
            type_name="ActivityTimeoutError",
            message=f"activity {name!r} attempt timed out after {timeout_ms} ms",
        )
        raise ActivityTimeoutError(str(details), details)

    # -- timers and events ----------------------------------------------------------------------
    def sleep(self, delay: timedelta | float) -> asyncio.Future[None]:
        """A durable timer ``delay`` (timedelta or seconds) from now."""
        return self._engine.create_timer(self._engine.current_ms + to_ms(delay))

    def create_timer(self, fire_at: datetime) -> asyncio.Future[None]:
        """A durable timer due at ``fire_at`` (timezone-aware)."""
        if fire_at.tzinfo is None:
            raise ValueError("create_timer() needs a timezone-aware datetime")
        return self._engine.create_timer(round(fire_at.timestamp() * 1000))

    @overload
    def wait_for_event(self, name: str) -> asyncio.Future[Any]: ...

    @overload
    def wait_for_event(self, name: str, result_type: type[T]) -> asyncio.Future[T]: ...

    def wait_for_event(self, name: str, result_type: Any = Any) -> asyncio.Future[Any]:
        """The next external event called ``name`` (events raised earlier are buffered)."""
        return self._engine.wait_for_event(name, result_type)

    # -- other orchestrations -------------------------------------------------------------------
    @overload
    def call_sub_orchestration(
        self,
        orchestration: Callable[[OrchestrationContext, I], Coroutine[Any, Any, R]],
        input: I,
        *,
        instance_id: str | None = None,
        version: str = "",
    ) -> asyncio.Future[R]: ...

    @overload
    def call_sub_orchestration(
        self,
        orchestration: Callable[[OrchestrationContext], Coroutine[Any, Any, R]],
        input: None = None,
        *,
        instance_id: str | None = None,
        version: str = "",
    ) -> asyncio.Future[R]: ...

    @overload
    def call_sub_orchestration(
        self,
        orchestration: str,
        input: Any = None,
        *,
        instance_id: str | None = None,
        version: str = "",
    ) -> asyncio.Future[Any]: ...

    def call_sub_orchestration(
        self,
        orchestration: str | Callable[..., Any],
        input: Any = None,
        *,
        instance_id: str | None = None,
        version: str = "",
    ) -> asyncio.Future[Any]:
        """Start a child orchestration and await its result.

        The child id defaults to ``f"{instance_id}:sub:{event_id}"`` (deterministic; after a
        reset point ``f"{instance_id}:sub:{execution}.{event_id}"``). A failed
        child raises ``ChildOrchestrationFailedError``; abandoning it cancels the child.
        """
        name, version, result_type = self._orchestration_identity(orchestration, version)
        child_id = instance_id or default_child_id(self.instance_id, self._engine.default_id)
        return self._engine.schedule_child(
            name, version, child_id, self._engine.codec.encode(input), result_type
        )

    def start_orchestration(
        self,
        orchestration: str | Callable[..., Any],
        input: Any = None,
        *,
        instance_id: str | None = None,
        version: str = "",
    ) -> str:
        """Start a detached orchestration (no result, no parent link); returns its id."""
        name, version, _ = self._orchestration_identity(orchestration, version)
        child_id = instance_id or f"{self.instance_id}:detached:{self._engine.default_id}"
        self._engine.command(
            ev.DetachedOrchestrationStarted,
            name=name,
            version=version,
            instance_id=child_id,
            input=self._engine.codec.encode(input),
            trace=self._engine.trace,
        )
        return child_id

    def continue_as_new(self, input: Any = None, *, version: str | None = None) -> NoReturn:
        """End this execution and start the next one with ``input`` (sessions stay open).

        Raises a ``BaseException`` signal that unwinds the orchestration code; do not catch it.
        """
        self._engine.terminate(
            ev.OrchestrationContinuedAsNew,
            input=self._engine.codec.encode(input),
            version=self.version if version is None else version,
        )

    # -- combinators ----------------------------------------------------------------------------
    def when_all(self, awaitables: Iterable[Awaitable[T]]) -> asyncio.Future[list[T]]:
        """Results of all, in argument order (``asyncio.gather``); the first failure raises."""
        futures = [asyncio.ensure_future(a, loop=self._loop) for a in awaitables]
        return asyncio.gather(*futures)

    @overload
    def when_any(self, awaitables: Iterable[Awaitable[T]]) -> asyncio.Future[asyncio.Future[T]]: ...

    @overload
    def when_any(
        self, awaitables: Iterable[Awaitable[Any]]
    ) -> asyncio.Future[asyncio.Future[Any]]: ...

    def when_any(self, awaitables: Iterable[Awaitable[Any]]) -> asyncio.Future[asyncio.Future[Any]]:
        """The first of ``awaitables`` to finish (as a future); the others are cancelled.

        Typed ``Future[Future[T]]`` when they share a result type ``T``; mixed types (an event
        and a timer) give ``Future[Future[Any]]``: compare the winner with ``is``.
        """
        return self._first_of([asyncio.ensure_future(a, loop=self._loop) for a in awaitables])

    def _first_of(
        self, futures: list[asyncio.Future[T]], *, cancel_losers: bool = True
    ) -> asyncio.Future[asyncio.Future[T]]:
        if not futures:
            raise ValueError("when_any() needs at least one awaitable")
        winner: asyncio.Future[asyncio.Future[T]] = self._loop.create_future()

        def on_done(done: asyncio.Future[T]) -> None:
            if winner.done():
                return
            winner.set_result(done)
            if cancel_losers:
                for other in futures:
                    if other is not done:
                        other.cancel()

        def on_winner(w: asyncio.Future[asyncio.Future[T]]) -> None:
            if w.cancelled():
                for other in futures:
                    other.cancel()

        for future in futures:
            future.add_done_callback(on_done)
        winner.add_done_callback(on_winner)
        return winner

    # -- patching (docs/deploying.md) ---------------------------------------------------------
    def patched(self, change_id: str) -> bool:
        """Whether to take the new path of a code change named ``change_id``.

        True in executions that reach this point on code that has the call (a ``PatchMarker``
        is recorded the first time), False when replaying history recorded without it, so an
        instance started on the old code keeps the old path and replays unchanged::

            if ctx.patched("ship-before-charge"):
                await ctx.call_activity(ship, order)   # new code
            else:
                await ctx.call_activity(charge, order) # old code, for old instances
        """
        return self._engine.patched(_change_id(change_id), deprecated=False)

    def deprecate_patch(self, change_id: str) -> None:
        """The old path of ``change_id`` is gone (no instance that took it remains): the
        marker is accepted where recorded and no longer written. Remove the call once no
        instance recorded with the marker remains."""
        self._engine.patched(_change_id(change_id), deprecated=True)

    # -- custom status and sessions -------------------------------------------------------------
    def set_custom_status(self, status: Any) -> None:
        """Publish a status value clients can read (``None`` clears it)."""
        encoded = None if status is None else self._engine.codec.encode(status)
        self._engine.command(ev.CustomStatusSet, status=encoded)

    def open_session(self, *, queue: str | None = None) -> asyncio.Future[str]:
        """Open a session with a new deterministic id; activities on it share one worker.
        ``queue``: the session's queue (only a worker serving it claims the session, and all
        its activities run there); without one, the queue of its first activity call."""
        return self._engine.open_session(
            f"session-{self._engine.next_event_id}", explicit=False, queue=_session_queue(queue)
        )

    def open_session_with_id(
        self, session_id: str, *, queue: str | None = None
    ) -> asyncio.Future[str]:
        """Open ``session_id`` (a no-op if it is already open); ``queue`` as ``open_session``."""
        return self._engine.open_session(session_id, explicit=True, queue=_session_queue(queue))

    def close_session(self, session_id: str) -> asyncio.Future[None]:
        """Close a session (a no-op for an unknown one); its in-flight activities are cancelled."""
        return self._engine.close_session(session_id)

    # -- talking to running orchestrations (docs/messaging.md) ---------------------------------
    def raise_event(self, instance_id: str, name: str, data: Any = None) -> None:
        """Send the external event ``name`` to another instance (recorded; delivered once,
        through the outbox when it lives in another partition; dropped if it does not exist)."""
        _check_name(instance_id, "instance id")
        _check_name(name, "event name")
        self._engine.command(
            ev.EventSent, instance_id=instance_id, name=name, data=self._engine.codec.encode(data)
        )

    @overload
    def dequeue_event(self, queue: str) -> asyncio.Future[Any]: ...

    @overload
    def dequeue_event(self, queue: str, result_type: type[T]) -> asyncio.Future[T]: ...

    def dequeue_event(self, queue: str, result_type: Any = Any) -> asyncio.Future[Any]:
        """The oldest event of the persistent FIFO queue ``queue`` (``client.enqueue_event``):
        each event is taken once, in order, including events raised before the wait and events
        not taken before a continue-as-new."""
        _check_name(queue, "queue name")
        return self._engine.dequeue_event(queue, result_type)

    def set_value(self, key: str, value: Any) -> None:
        """Write ``key`` of the instance's key-value state (``None`` deletes it), committed with
        the turn and readable by ``client.get_value`` without a turn; kept across
        continue-as-new. Raises ValidationError past MAX_VALUE_KEYS keys or MAX_VALUE_BYTES."""
        _check_name(key, "value key")
        encoded = None if value is None else self._engine.codec.encode(value)
        if encoded is not None and len(encoded) > MAX_VALUE_BYTES:
            raise ValidationError(
                f"value of {key!r} is {len(encoded)} bytes encoded (max {MAX_VALUE_BYTES})"
            )
        keys = self._engine.value_keys
        if encoded is not None and key not in keys and len(keys) >= MAX_VALUE_KEYS:
            raise ValidationError(f"the instance already has {MAX_VALUE_KEYS} values")
        self._engine.command(ev.ValueSet, key=key, value=encoded)
        if encoded is None:
            keys.discard(key)
        else:
            keys.add(key)

    def set_update_handler(
        self,
        name: str,
        handler: Callable[[Any], Any],
        *,
        validator: Callable[[Any], object] | None = None,
    ) -> None:
        """Answer ``client.update(instance_id, name, arg)`` with ``handler(arg)`` (a function
        or coroutine function that may use the context). ``validator(arg)`` runs first and
        rejects the update by raising; a rejected update is not recorded."""
        _check_name(name, "update name")
        self._engine.update_handlers[name] = (handler, validator)

    def append_stream(self, item: Any) -> None:
        """Append ``item`` to the instance's progress stream (committed with the turn, so
        once: replay does not append again); clients read it with ``client.stream``."""
        self._engine.command(ev.StreamAppended, data=self._engine.codec.encode(item))

    @property
    def history_length(self) -> int:
        """Events of this execution so far (the same on replay)."""
        return self._engine.cursor

    @property
    def continue_as_new_suggested(self) -> bool:
        """True once the execution has ``App.continue_as_new_suggested_at`` events; past
        ``App.max_history_events`` the instance fails with HistoryLimitExceededError."""
        return self._engine.cursor >= self._engine.suggest_at

    # -- helpers --------------------------------------------------------------------------------
    def _orchestration_identity(
        self, orchestration: str | Callable[..., Any], version: str
    ) -> tuple[str, str, Any]:
        if isinstance(orchestration, str):
            return orchestration, version, Any
        definition = orchestration_metadata(orchestration)
        return definition.name, version or definition.version, definition.result_type

    def __repr__(self) -> str:
        return f"OrchestrationContext(instance_id={self.instance_id!r}, name={self.name!r})"


def _change_id(change_id: object) -> str:
    if not isinstance(change_id, str) or not change_id or len(change_id) > 200:
        raise ValidationError(f"a patch change id is a str of 1 to 200 chars, not {change_id!r}")
    return change_id


def _session_queue(queue: str | None) -> str | None:
    from durable_redis.core.jobs import validate_queue

    return None if queue is None else validate_queue(queue)
