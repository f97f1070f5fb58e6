"""The user-facing registry: ``App`` with ``@app.orchestration`` and ``@app.activity``."""

from __future__ import annotations

import inspect
import threading
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar, overload

from durable_redis import ids
from durable_redis.core.codec import Codec, MsgpackCodec
from durable_redis.errors import (
    ConfigurationError,
    NotRegisteredError,
    RegistrationError,
    ValidationError,
)

if TYPE_CHECKING:
    from durable_redis.core.jobs import Limit

__all__ = [
    "ActivityContext",
    "ActivityDefinition",
    "App",
    "OrchestrationDefinition",
    "activity_metadata",
    "orchestration_metadata",
]

F = TypeVar("F", bound=Callable[..., Any])

MAX_NAME_LENGTH = 256
DEFAULT_MAX_SESSIONS = 10
DEFAULT_MAX_HISTORY_EVENTS = 50_000
"""Events one execution may hold (plus its terminal event) before the instance fails."""
_ORCH_ATTR = "__durable_orchestration__"
_ACT_ATTR = "__durable_activity__"


@dataclass(frozen=True, slots=True)
class ActivityDefinition:
    name: str
    version: str
    fn: Callable[..., Any]
    is_async: bool
    input_type: Any
    result_type: Any
    takes_input: bool
    queue: str = "default"  # the job queue of its jobs (client.enqueue may override it)
    # flow control by key of its jobs and of its calls from orchestrations (client.enqueue /
    # ctx.call_activity may override)
    limit: Limit | None = None
    # sync only: where it runs (runtime/_speed.py): None = measured (inline on the worker's
    # event loop once its first calls were fast), True = always inline, False = the thread pool
    inline: bool | None = None


@dataclass(frozen=True, slots=True)
class OrchestrationDefinition:
    name: str
    version: str
    fn: Callable[..., Any]
    input_type: Any
    result_type: Any
    takes_input: bool
    # what a worker does when the code no longer matches an instance's history: "hold" it
    # (retried until compatible code is deployed), "fail" it, or None (the worker's option)
    on_nondeterminism: str | None = None
    limit: Limit | None = None  # flow control by key of its starts (client.start may override)


NONDETERMINISM_POLICIES = ("hold", "fail")


@dataclass(frozen=True, slots=True)
class StreamWriter:
    """How an activity appends to its instance's progress stream (set by the runtime):
    ``append`` from async code, ``append_from_thread`` from a sync activity's thread."""

    append: Callable[[Any], Awaitable[str]]
    append_from_thread: Callable[[Any], str]


class ActivityContext:
    """What an activity gets as its first argument. Plain data plus a cancellation flag."""

    def __init__(
        self,
        *,
        instance_id: str,
        execution_id: int,
        activity_id: int,
        name: str,
        attempt: int = 1,
        session_id: str | None = None,
        worker_id: str = "",
        cancel_event: threading.Event | None = None,
        delivery: int = 1,
        first_attempt_id: int | None = None,
        stream: StreamWriter | None = None,
        job_id: str | None = None,
        progress: Callable[[Any], None] | None = None,
    ) -> None:
        self._stream = stream
        self.instance_id = instance_id
        self.execution_id = execution_id
        self.activity_id = activity_id
        self.name = name
        #: the retry-policy attempt, 1-based (each retry is a new activity with a new id)
        self.attempt = attempt
        #: how often this attempt was delivered to a worker (> 1 after a crash or lost lease)
        self.delivery = delivery
        self._first_attempt_id = first_attempt_id if first_attempt_id is not None else activity_id
        self.session_id = session_id
        self.worker_id = worker_id
        self._cancel_event = cancel_event if cancel_event is not None else threading.Event()
        #: the job's id when this activity runs as a job (``client.enqueue``), else None
        self.job_id = job_id
        self._progress = progress

    def report_progress(self, progress: Any) -> None:
        """Publish the job's progress (any encodable value), shown by ``job.status()`` and
        ``durable-redis job status``. Stored at the next flush (within ~50 ms), the latest value
        wins. A no-op for activities called from an orchestration. Safe from any thread."""
        if self._progress is not None:
            self._progress(progress)

    @property
    def activity_key(self) -> str:
        return ids.activity_key(self.execution_id, self.activity_id)

    @property
    def idempotency_key(self) -> str:
        """Stable across redeliveries and retry-policy attempts: use it to dedupe side effects.

        For a job: ``"job:<job id>"``."""
        if self.job_id is not None:
            return ids.job_idempotency_key(self.job_id)
        return ids.activity_attempt_id(self.instance_id, self.execution_id, self._first_attempt_id)

    @property
    def is_cancelled(self) -> bool:
        """True once the runtime cancelled this activity (abandoned, lease lost, shutdown)."""
        return self._cancel_event.is_set()

    def cancel(self) -> None:
        """Set the cancellation flag (called by the runtime)."""
        self._cancel_event.set()

    def append_stream(self, item: Any) -> str:
        """From a sync activity: append ``item`` to the instance's progress stream; returns
        its offset. At least once, like the activity: a retried attempt may append again."""
        return self._writer().append_from_thread(item)

    async def append_stream_async(self, item: Any) -> str:
        """From an async activity: :meth:`append_stream`."""
        return await self._writer().append(item)

    def _writer(self) -> StreamWriter:
        if self._stream is None:
            raise ConfigurationError(
                "this activity context has no progress stream (not run by a worker)"
            )
        return self._stream

    def __repr__(self) -> str:
        return (
            f"ActivityContext(instance_id={self.instance_id!r}, name={self.name!r}, "
            f"activity_key={self.activity_key!r}, attempt={self.attempt})"
        )


def _validate_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
        raise RegistrationError(f"invalid {what} name {name!r}: 1..{MAX_NAME_LENGTH} characters")
    if name.startswith("__durable"):
        raise RegistrationError(f"{what} names starting with '__durable' are reserved: {name!r}")
    return name


def _signature_types(fn: Callable[..., Any], what: str) -> tuple[Any, Any, bool]:
    """(input type, result type, takes_input) from the annotations of ``fn(ctx, input)``."""
    params = list(inspect.signature(fn).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not 1 <= len(positional) <= 2:
        raise RegistrationError(
            f"{what} {fn.__qualname__} must take (ctx) or (ctx, input), got {len(positional)} "
            "positional parameters"
        )
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references: fall back to untyped decoding
        hints = {}
    input_type = hints.get(positional[1].name, Any) if len(positional) == 2 else Any
    return input_type, hints.get("return", Any), len(positional) == 2


class App:
    """A registry of orchestrations and activities; workers and clients are built over one.

    ``max_sessions_per_orchestration`` limits the sessions one instance may hold open at once.
    ``max_history_events`` (default 50,000) bounds one execution's history: past it the
    instance fails with ``HistoryLimitExceededError``; ``ctx.continue_as_new_suggested`` turns
    true at ``continue_as_new_suggested_at`` events (default 80 % of the maximum).
    """

    def __init__(
        self,
        name: str = "app",
        *,
        codec: Codec | None = None,
        max_sessions_per_orchestration: int = DEFAULT_MAX_SESSIONS,
        max_history_events: int = DEFAULT_MAX_HISTORY_EVENTS,
        continue_as_new_suggested_at: int | None = None,
    ) -> None:
        if max_sessions_per_orchestration < 0:
            raise ConfigurationError("max_sessions_per_orchestration must be >= 0")
        if max_history_events < 10:
            raise ConfigurationError("max_history_events must be >= 10")
        suggested = (
            continue_as_new_suggested_at
            if continue_as_new_suggested_at is not None
            else max_history_events * 4 // 5
        )
        if not 1 <= suggested <= max_history_events:
            raise ConfigurationError(
                "continue_as_new_suggested_at must be between 1 and max_history_events"
            )
        self.max_history_events = max_history_events
        self.continue_as_new_suggested_at = suggested
        self.name = name
        self.codec: Codec = codec if codec is not None else MsgpackCodec()
        self.max_sessions_per_orchestration = max_sessions_per_orchestration
        self._orchestrations: dict[str, dict[str, OrchestrationDefinition]] = {}
        self._latest: dict[str, str] = {}
        self._activities: dict[str, ActivityDefinition] = {}
        self._schedules: dict[str, Any] = {}

    # -- registration ---------------------------------------------------------------------------
    @overload
    def orchestration(self, fn: F, /) -> F: ...

    @overload
    def orchestration(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        version: str = "",
        on_nondeterminism: str | None = None,
        limit: Limit | None = None,
    ) -> Callable[[F], F]: ...

    def orchestration(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        version: str = "",
        on_nondeterminism: str | None = None,
        limit: Limit | None = None,
    ) -> Any:
        """Register an ``async def fn(ctx: OrchestrationContext, input)``.

        ``on_nondeterminism`` ("hold" or "fail"; default: the worker's
        ``WorkerOptions.on_nondeterminism``) is what a worker does with an instance whose
        history this code no longer matches (docs/deploying.md). ``limit``: flow control of
        its starts by key, ``Limit(key=, concurrency=1)`` (singleton), ``debounce=`` or
        ``throttle=`` (docs/routing.md "Orchestration starts"; ``client.start(..., limit=)``
        overrides it).
        """
        from durable_redis.core.jobs import Limit as _Limit

        if limit is not None:
            if not isinstance(limit, _Limit):
                raise RegistrationError(f"limit must be a Limit, got {limit!r}")
            try:
                limit.start_mode  # noqa: B018 - validates the combination
            except ValidationError as exc:
                raise RegistrationError(str(exc)) from None
        if on_nondeterminism is not None and on_nondeterminism not in NONDETERMINISM_POLICIES:
            raise RegistrationError(
                f"on_nondeterminism must be one of {NONDETERMINISM_POLICIES}, "
                f"not {on_nondeterminism!r}"
            )

        def register(f: F) -> F:
            if not inspect.iscoroutinefunction(f):
                raise RegistrationError(f"orchestration {f.__qualname__} must be an async def")
            reg_name = _validate_name(name or f.__name__, "orchestration")
            versions = self._orchestrations.setdefault(reg_name, {})
            if version in versions:
                raise RegistrationError(
                    f"orchestration {reg_name!r} version {version!r} is already registered"
                )
            input_type, result_type, takes_input = _signature_types(f, "orchestration")
            definition = OrchestrationDefinition(
                reg_name, version, f, input_type, result_type, takes_input, on_nondeterminism, limit
            )
            versions[version] = definition
            self._latest[reg_name] = version
            setattr(f, _ORCH_ATTR, definition)
            return f

        return register(fn) if fn is not None else register

    @overload
    def activity(self, fn: F, /) -> F: ...

    @overload
    def activity(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        version: str = "",
        queue: str = "default",
        limit: Limit | None = None,
        inline: bool | None = None,
    ) -> Callable[[F], F]: ...

    def activity(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        version: str = "",
        queue: str = "default",
        limit: Limit | None = None,
        inline: bool | None = None,
    ) -> Any:
        """Register ``fn(ctx: ActivityContext, input)``, sync or async. ``queue``: the queue
        of its jobs and of its calls from orchestrations (``client.enqueue(..., queue=)`` and
        ``ctx.call_activity(..., queue=)`` override it); only workers serving it
        (``WorkerOptions.queues``) run them. See docs/routing.md. ``limit``: flow control by
        key of its jobs (``Limit(key=..., concurrency=, rate=, per=, debounce=, throttle=)``,
        docs/routing.md; ``client.enqueue(..., limit=)`` overrides it) and of its calls from
        orchestrations (``concurrency`` and ``rate``, not on a session;
        ``ctx.call_activity(..., limit=)`` overrides it). ``inline`` (sync functions only): where it
        runs. By default (``None``) the worker measures it: its first 3 calls run in the
        thread pool, and when all took under 1 ms it runs on the worker's event loop from then
        on, saving the thread hop; one call there over 20 ms sends it back to the pool for good
        (it blocked the loop, lease renewal and every other activity and turn of the worker,
        while it ran). ``inline=True``: always on the loop, for calls that take well under a
        millisecond and never block; ``inline=False``: always in the pool, for a function that
        is usually fast but may block (a cache miss that goes to the network). A call with a
        timeout always runs in the pool (so the timeout can fire); local activities run on the
        loop only when ``inline=True``."""
        from durable_redis.core.jobs import Limit as _Limit
        from durable_redis.core.jobs import validate_queue

        validate_queue(queue)
        if limit is not None and not isinstance(limit, _Limit):
            raise RegistrationError(f"limit must be a Limit, got {limit!r}")

        def register(f: F) -> F:
            reg_name = _validate_name(name or f.__name__, "activity")
            if reg_name in self._activities:
                raise RegistrationError(f"activity {reg_name!r} is already registered")
            is_async = inspect.iscoroutinefunction(f)
            if inline is not None and is_async:
                raise RegistrationError(
                    f"activity {reg_name!r}: inline= is for sync functions (an async one "
                    "already runs on the event loop)"
                )
            input_type, result_type, takes_input = _signature_types(f, "activity")
            definition = ActivityDefinition(
                reg_name,
                version,
                f,
                is_async,
                input_type,
                result_type,
                takes_input,
                queue,
                limit,
                None if inline is None else bool(inline),
            )
            self._activities[reg_name] = definition
            setattr(f, _ACT_ATTR, definition)
            return f

        return register(fn) if fn is not None else register

    def schedule(
        self,
        *,
        cron: str | None = None,
        every: float | timedelta | None = None,
        timezone: str = "UTC",
        name: str | None = None,
        input: Any = None,
        catch_up: str = "skip",
        max_catch_up: int = 10,
        overlap: str = "skip",
        priority: int = 0,
        retry: Any = None,
        timeout: float | timedelta | None = None,
        result_ttl: float | timedelta = 3600.0,
    ) -> Callable[[F], F]:
        """Run an activity as a job, or start an orchestration, on a cron expression (in
        ``timezone``) or every ``every`` seconds; every worker of this app declares it at start,
        and each tick runs once. Applied to an ``@app.orchestration`` function, each tick starts
        one instance ``<name>@<tick ms>`` with ``input`` (``retry``, ``timeout``, ``priority``
        and ``result_ttl`` are job options and ignored there). Any other function is registered
        as an activity if it is not one yet. Policies: ``durable_redis.core.schedules``;
        ValidationError for a bad expression or policy."""
        from durable_redis.core.retry import to_ms
        from durable_redis.core.schedules import ScheduleDefinition

        def define(
            activity: str, orchestration: str | None = None, version: str = ""
        ) -> ScheduleDefinition:
            return ScheduleDefinition(
                name=_validate_name(name or activity or str(orchestration), "schedule"),
                activity=activity,
                orchestration=orchestration,
                version=version,
                input=input,
                cron=cron,
                every_ms=None if every is None else to_ms(every),
                timezone=timezone,
                catch_up=catch_up,
                max_catch_up=max_catch_up,
                overlap=overlap,
                priority=priority,
                result_ttl_ms=to_ms(result_ttl),
                timeout_ms=None if timeout is None else to_ms(timeout),
                retry=retry,
            )

        define("check")  # ValidationError at decoration, before anything is registered

        def register(f: F) -> F:
            orch: OrchestrationDefinition | None = getattr(f, _ORCH_ATTR, None)
            versions = self._orchestrations.get(orch.name, {}) if orch is not None else {}
            if orch is not None and versions.get(orch.version) is orch:
                schedule = define("", orch.name, orch.version)
            else:
                found = getattr(f, _ACT_ATTR, None)
                if found is None or self._activities.get(found.name) is not found:
                    self.activity(f)
                definition: ActivityDefinition = getattr(f, _ACT_ATTR)
                schedule = define(definition.name)
            if schedule.name in self._schedules:
                raise RegistrationError(f"schedule {schedule.name!r} is already registered")
            self._schedules[schedule.name] = schedule
            return f

        return register

    @property
    def schedules(self) -> list[Any]:
        """The schedules declared with ``@app.schedule`` (ScheduleDefinition)."""
        return list(self._schedules.values())

    # -- lookup ---------------------------------------------------------------------------------
    def get_orchestration(
        self, name: str, version: str | None = None, *, exact: bool = False
    ) -> OrchestrationDefinition:
        """The registration of ``name`` (``version=None`` or ``""`` picks the latest).

        ``exact``: the version recorded in a history, looked up as it is (``""`` is the
        unversioned registration, not the latest): a worker never runs an execution on another
        version's code (docs/deploying.md, "Version routing")."""
        versions = self._orchestrations.get(name)
        if not versions:
            raise NotRegisteredError(f"no orchestration named {name!r} in app {self.name!r}")
        if version is None or (version == "" and "" not in versions and not exact):
            version = self._latest[name]
        definition = versions.get(version)
        if definition is None:
            raise NotRegisteredError(
                f"orchestration {name!r} has no version {version!r} in app {self.name!r} "
                f"(registered: {sorted(versions)})"
            )
        return definition

    def get_activity(self, name: str) -> ActivityDefinition:
        definition = self._activities.get(name)
        if definition is None:
            raise NotRegisteredError(f"no activity named {name!r} in app {self.name!r}")
        return definition

    @property
    def orchestration_names(self) -> list[str]:
        return sorted(self._orchestrations)

    @property
    def activity_names(self) -> list[str]:
        return sorted(self._activities)

    def __repr__(self) -> str:
        return (
            f"App({self.name!r}, orchestrations={self.orchestration_names}, "
            f"activities={self.activity_names})"
        )


def _label(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _metadata(fn: Callable[..., Any], wanted: str) -> Any:
    """The definition ``@app.<wanted>`` attached to ``fn``; NotRegisteredError naming what
    ``fn`` is instead (the other kind, or nothing)."""
    kinds = {
        "orchestration": (_ORCH_ATTR, OrchestrationDefinition),
        "activity": (_ACT_ATTR, ActivityDefinition),
    }
    attr, cls = kinds[wanted]
    definition = getattr(fn, attr, None)
    if isinstance(definition, cls):
        return definition
    other = "activity" if wanted == "orchestration" else "orchestration"
    other_attr, other_cls = kinds[other]
    if isinstance(getattr(fn, other_attr, None), other_cls):
        how = {
            "orchestration": "start an orchestration that calls it with ctx.call_activity",
            "activity": "run it with ctx.call_sub_orchestration",
        }[wanted]
        raise NotRegisteredError(
            f"{_label(fn)} is an {other} (@app.{other}), not an {wanted}: {how}"
        )
    raise NotRegisteredError(f"{_label(fn)} is not registered with @app.{wanted}")


def orchestration_metadata(fn: Callable[..., Any]) -> OrchestrationDefinition:
    """The registration attached to an ``@app.orchestration`` function."""
    definition: OrchestrationDefinition = _metadata(fn, "orchestration")
    return definition


def activity_queue(app: App | None, activity: str) -> str:
    """The queue of ``activity``'s jobs on ``app`` ("default" without an app, or when the app
    does not register it)."""
    found = app._activities.get(activity) if app is not None else None
    return found.queue if isinstance(found, ActivityDefinition) else "default"


def activity_metadata(fn: Callable[..., Any]) -> ActivityDefinition:
    """The registration attached to an ``@app.activity`` function."""
    definition: ActivityDefinition = _metadata(fn, "activity")
    return definition
