"""The client: start orchestrations, send them events, cancel, wait, inspect, purge.

::

    async with Client.from_url("redis://localhost:6379/0", app=app) as client:
        instance_id = await client.start(checkout, order)
        receipt = await client.wait_for_completion(instance_id, timeout=30)

Every id is validated before anything is written (:class:`~durable_redis.errors.InvalidIdError`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar, overload

import anyio

from durable_redis import core, ids
from durable_redis._client_messaging import ClientMessagingMixin
from durable_redis._identity import orchestration_identity
from durable_redis._jobs_client import JobsClientMixin
from durable_redis._queues_client import QueueControlMixin
from durable_redis._schedules_client import SchedulesClientMixin
from durable_redis.core.jobs import Limit
from durable_redis.errors import (
    CodecError,
    ConfigurationError,
    FailureDetails,
    InstanceNotFoundError,
    OrchestrationCancelledError,
    OrchestrationFailedError,
    StoreError,
    ValidationError,
    WaitTimeoutError,
)
from durable_redis.ids import MAX_ID_BYTES as MAX_ID_BYTES
from durable_redis.ids import validate_id
from durable_redis.runtime import tracing
from durable_redis.storage.base import (
    ExistingInstancePolicy,
    InstanceCreate,
    InstanceInfo,
    InstanceStatus,
    Store,
)

__all__ = [
    "Client",
    "InstanceHandle",
    "InstanceId",
    "InstanceState",
    "InstanceStatePage",
    "ResetInfo",
    "validate_id",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741 - input type
R = TypeVar("R")

_POLL_START_S = 0.01
_POLL_MAX_S = 0.5


class InstanceHandle(str, Generic[R]):
    """What :meth:`Client.start` returns: the instance id, and a handle on the instance.

    It *is* the id (a ``str`` subclass: store it, log it, pass it wherever an id is taken, as
    before), and it carries the orchestration's result type for a type checker
    (``InstanceHandle[Receipt]``) and for decoding::

        handle = await client.start(pay, 5)
        handle.id                  # the plain str
        await handle.state()       # InstanceState | None, output typed
        await handle.result()      # the output, typed R (wait_for_completion)

    A handle made from a bare id (``InstanceHandle("order-1")``) has no client: its methods
    raise ConfigurationError; pass the id to a client's methods instead.
    """

    _client: Client | None
    _result_type: Any

    def __new__(
        cls, instance_id: str, client: Client | None = None, result_type: Any = None
    ) -> InstanceHandle[R]:
        handle = super().__new__(cls, instance_id)
        handle._client = client
        handle._result_type = result_type
        return handle

    @property
    def id(self) -> str:
        """The instance id as a plain ``str``."""
        return str.__str__(self)

    def __reduce__(self) -> tuple[type[str], tuple[str]]:
        """Copied (or pickled), a handle is its id, a plain ``str``: its client is not copied."""
        return str, (self.id,)

    def _bound(self) -> Client:
        if self._client is None:
            raise ConfigurationError(
                f"instance handle {self.id!r} was not returned by a client's start(): "
                "pass the id to a Client instead"
            )
        return self._client

    async def result(self, *, timeout: float | timedelta | None = None) -> R:
        """:meth:`Client.wait_for_completion`: the output, decoded as the orchestration's
        return type."""
        value: R = await self._bound().wait_for_completion(
            self.id, timeout=timeout, result_type=self._result_type
        )
        return value

    async def state(self) -> InstanceState | None:
        """:meth:`Client.get_status`, its output decoded as the orchestration's return type."""
        return await self._bound().get_status(self.id, result_type=self._result_type)

    async def raise_event(self, name: str, data: Any = None) -> None:
        await self._bound().raise_event(self.id, name, data)

    async def cancel(self, reason: str = "") -> None:
        await self._bound().cancel(self.id, reason)


InstanceId = InstanceHandle
"""The earlier name of :class:`InstanceHandle` (a ``str`` typed by the result), kept."""


@dataclass(frozen=True, slots=True)
class InstanceState:
    """An instance as the client reports it: payloads decoded, times as UTC datetimes."""

    instance_id: str
    name: str
    version: str
    status: InstanceStatus
    execution_id: int
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    parent_instance_id: str | None
    output: Any
    error: FailureDetails | None
    custom_status: Any
    input: Any
    # the divergence text while a worker holds the instance because its code no longer matches
    # its history (docs/deploying.md); None otherwise
    held: str | None = None
    held_since: datetime | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal


@dataclass(frozen=True, slots=True)
class InstanceStatePage:
    instances: Sequence[InstanceState]
    next_cursor: str | None


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _seconds(value: float | timedelta | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


class Client(ClientMessagingMixin, JobsClientMixin, SchedulesClientMixin, QueueControlMixin):
    """Talks to the store on behalf of applications; never runs orchestration code.

    Background jobs (``enqueue``, ``enqueue_many``, ``get_job``, ``list_jobs``, ``cancel_job``,
    ``retry_job``) come from :class:`~durable_redis._jobs_client.JobsClientMixin`, schedules
    (``create_schedule``, ``list_schedules``, ``pause_schedule``, ``resume_schedule``,
    ``trigger_schedule``, ``delete_schedule``) from ``_schedules_client``; updates, values, event
    queues and streams from :class:`~durable_redis._client_messaging.ClientMessagingMixin`."""

    def __init__(
        self, store: Store, app: core.App | None = None, *, codec: core.Codec | None = None
    ) -> None:
        self.store = store
        self.app = app
        if codec is None:
            codec = getattr(app, "codec", None) if app is not None else None
        self.codec: core.Codec = codec if codec is not None else core.MsgpackCodec()
        self._result_types: dict[str, Any] = {}
        self._owns_store = False
        self._initialized = False

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str = "default",
        app: core.App | None = None,
        codec: core.Codec | None = None,
    ) -> Client:
        from durable_redis.storage import RedisStore

        client = cls(RedisStore.from_url(url, namespace=namespace), app, codec=codec)
        client._owns_store = True
        return client

    async def __aenter__(self) -> Client:
        await self._ensure_initialized()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_store:
            await self.store.close()

    async def _ensure_initialized(self) -> None:
        if not self._initialized:
            await self.store.initialize()
            self._initialized = True

    # -- commands ------------------------------------------------------------------------------
    @overload
    async def start(
        self,
        orchestration: Callable[[core.OrchestrationContext, I], Coroutine[Any, Any, R]],
        input: I,
        *,
        instance_id: str | None = None,
        version: str | None = None,
        if_exists: ExistingInstancePolicy = ExistingInstancePolicy.FAIL,
        start_at: datetime | None = None,
        limit: Limit | None = None,
    ) -> InstanceHandle[R]: ...

    @overload
    async def start(
        self,
        orchestration: Callable[[core.OrchestrationContext], Coroutine[Any, Any, R]],
        input: None = None,
        *,
        instance_id: str | None = None,
        version: str | None = None,
        if_exists: ExistingInstancePolicy = ExistingInstancePolicy.FAIL,
        start_at: datetime | None = None,
        limit: Limit | None = None,
    ) -> InstanceHandle[R]: ...

    @overload
    async def start(
        self,
        orchestration: str,
        input: Any = None,
        *,
        instance_id: str | None = None,
        version: str | None = None,
        if_exists: ExistingInstancePolicy = ExistingInstancePolicy.FAIL,
        start_at: datetime | None = None,
        limit: Limit | None = None,
    ) -> InstanceHandle[Any]: ...

    async def start(
        self,
        orchestration: Callable[..., Any] | str,
        input: Any = None,
        *,
        instance_id: str | None = None,
        version: str | None = None,
        if_exists: ExistingInstancePolicy = ExistingInstancePolicy.FAIL,
        start_at: datetime | None = None,
        limit: Limit | None = None,
    ) -> InstanceHandle[Any]:
        """Start an orchestration (by function or by registered name); return its handle.

        The :class:`InstanceHandle` is the instance id (a ``str``, as before) with
        ``.result()``, ``.state()``, ``.id``. By function, the input is type-checked against its
        annotation and the handle carries its result type.

        ``if_exists`` decides what happens when ``instance_id`` is taken: FAIL raises
        InstanceExistsError, IGNORE keeps the existing instance, TERMINATE_IF_DONE replaces a
        finished one. ``start_at`` delays the first turn.

        ``limit`` (else the orchestration's registered ``limit``): flow control of starts by
        key (docs/routing.md "Orchestration starts"), decided atomically with the create:
        ``Limit(key=, concurrency=1)`` is a singleton (while the key's instance is pending or
        running, a start returns its id and creates nothing), ``debounce=S`` (a start while
        the key's instance waits in its quiet period replaces its input, pushes its start to
        S from now and returns its id), ``throttle=S`` (at most one start per S seconds; the
        others return the kept instance's id). The returned id is the instance that holds the
        start; a keyed instance lives in its key's partition (a given ``instance_id`` may get a
        ``:k`` suffix there when P > 1, as jobs' ids do).
        """
        name, resolved_version, result_type = orchestration_identity(orchestration, self.app)
        chosen = limit if limit is not None else _registered_start_limit(orchestration, self.app)
        flow: tuple[str, str] | None = None
        if chosen is not None:
            if not isinstance(chosen, Limit):
                raise ValidationError(f"limit must be a Limit, got {chosen!r}")
            flow = chosen.key_for(input), chosen.start_mode
            if start_at is not None and chosen.debounce is not None:
                raise ValidationError("a debounced start takes no start_at (its quiet period is)")
        if instance_id is not None:
            validate_id(instance_id)
        elif flow is None:
            instance_id = uuid.uuid4().hex
        if version is not None:
            resolved_version = version
        encoded_input = self.codec.encode(input)
        visible_at_ms = None
        if start_at is not None:
            if start_at.tzinfo is None:
                raise ValidationError("start_at must be timezone-aware")
            visible_at_ms = int(start_at.timestamp() * 1000)
        await self._ensure_initialized()
        if flow is not None:  # every start of a key is judged in the key's partition
            instance_id = self.store.id_for_key(instance_id, flow[0])
        assert instance_id is not None
        with tracing.client_start_span(name, instance_id) as trace:  # a no-op unless traced
            message_id, message = _start_message(
                instance_id, name, resolved_version, encoded_input, trace
            )
            create = InstanceCreate(name=name, version=resolved_version, input=encoded_input)
            if flow is None:
                created = await self.store.create_instance(
                    instance_id,
                    create,
                    message_id,
                    message,
                    policy=if_exists,
                    visible_at_ms=visible_at_ms,
                )
            else:
                instance_id, created = await self.store.create_limited_instance(
                    instance_id,
                    create,
                    message_id,
                    message,
                    flow_key=flow[0],
                    flow_mode=flow[1],
                    policy=if_exists,
                    visible_at_ms=visible_at_ms,
                )
        if result_type is not None:
            self._result_types[instance_id] = result_type
        logger.debug(
            "started %s as %s (created=%s)",
            name,
            instance_id,
            created,
            extra={"instance_id": instance_id},
        )
        return InstanceHandle(instance_id, self, result_type)

    async def raise_event(self, instance_id: str, name: str, data: Any = None) -> None:
        """Deliver the external event ``name`` to the instance.

        Raises InstanceNotFoundError if there is none, InstanceTerminalError if it has ended
        (completed, failed or cancelled: no code would ever read the event).
        """
        validate_id(instance_id)
        validate_id(name, "event name")
        encoded = self.codec.encode(data)
        message_id = ids.client_message_id("event", uuid.uuid4().hex)
        message = core.encode_message(core.event_raised_message(name, encoded))
        await self._ensure_initialized()
        await self.store.enqueue_message(instance_id, message_id, message)

    async def cancel(self, instance_id: str, reason: str = "") -> None:
        """Ask the instance to cancel: it fails as cancelled, its activities and children too.

        Raises InstanceNotFoundError if there is none, InstanceTerminalError if it has already
        ended (``exc.status`` says how).
        """
        validate_id(instance_id)
        message = core.encode_message(core.cancel_message(reason))
        await self._ensure_initialized()
        await self.store.enqueue_message(
            instance_id, ids.client_message_id("cancel", uuid.uuid4().hex), message
        )

    async def purge(self, instance_id: str, *, force: bool = False) -> int:
        """Delete the instance and its children. Returns how many instances were deleted.

        Raises InstanceRunningError for a running instance unless ``force``.
        """
        validate_id(instance_id)
        await self._ensure_initialized()
        self._result_types.pop(instance_id, None)
        return await self.store.delete_instance(instance_id, force=force)

    async def fail_held(self, instance_id: str) -> bool:
        """Fail a held instance (code that no longer matches its history) at its next retried
        turn instead of holding it again. False if it is not held (nothing changed)."""
        validate_id(instance_id)
        await self._ensure_initialized()
        return await self.store.request_fail_held(instance_id)

    async def reset(
        self,
        instance_id: str,
        event_id: int | str = "before-failure",
        *,
        reason: str = "",
        by: str | None = None,
        reapply_events: bool = True,
    ) -> ResetInfo:
        """Re-run a failed, held, completed or cancelled instance from a point of its history,
        as a new execution of the same id (docs/deploying.md, "Reset").

        Events 1..``event_id`` of the current execution are kept (their activity results are
        replayed, not re-run); the new execution records an ``ExecutionReset`` event (from
        where, ``reason``, ``by``: default ``user@host``) and runs the code live from there.
        ``event_id`` is an event id where nothing is in flight, or a shortcut:
        ``"before-failure"`` (default: the latest such point before the first failure) or
        ``"last-turn"`` (the latest such point). The old execution's history stays readable
        (``get_history(id, execution_id=N)``). Events raised after the point (consumed by the
        old execution) are delivered again to the new one, before anything queued, unless
        ``reapply_events=False``.

        Raises InstanceNotFoundError, InstanceRunningError (running and not held: nothing
        changed), ResetPointError (the point has work in flight or is not one; the message
        lists the valid points).
        """
        from durable_redis.core.reset import plan_reset

        validate_id(instance_id)
        await self._ensure_initialized()
        who = by if by is not None else _operator()
        for _ in range(5):
            info = await self.store.get_instance(instance_id)
            if info is None:
                raise InstanceNotFoundError(f"instance {instance_id!r} not found")
            raw = await self.store.read_history(instance_id, info.execution_id)
            try:
                history = core.decode_history(raw)
            except CodecError as exc:
                raise CodecError(f"the history of {instance_id!r}: {exc}") from exc
            now_ms = await self.store.server_time_ms()
            plan = plan_reset(
                history,
                event_id,
                reason=reason,
                by=who,
                now_ms=now_ms,
                reapply_events=reapply_events,
            )
            wake = core.encode_message(
                core.messages.TimerFired(
                    execution_id=plan.new_execution, timer_id=0, fire_at_ms=now_ms
                )
            )
            new_execution = await self.store.reset_instance(
                instance_id,
                execution_id=plan.from_execution,
                history_len=len(raw),
                keep=plan.keep,
                started=plan.started,
                reset_event=plan.reset_event,
                wake=(f"reset:{uuid.uuid4().hex}", wake),
                reapply=plan.reapplied,
            )
            if new_execution is not None:
                logger.info(
                    "instance %s reset to event %d of execution %d (execution %d): %s",
                    instance_id,
                    plan.keep,
                    plan.from_execution,
                    new_execution,
                    reason or "no reason given",
                    extra={"instance_id": instance_id},
                )
                self._result_types.pop(instance_id, None)
                return ResetInfo(
                    instance_id=instance_id,
                    from_execution=plan.from_execution,
                    from_event=plan.keep,
                    execution_id=new_execution,
                    reapplied_events=len(plan.reapplied),
                )
        raise StoreError(f"instance {instance_id!r} kept changing while it was being reset")

    # -- queries -------------------------------------------------------------------------------
    async def get_status(
        self, instance_id: str, *, result_type: Any = None
    ) -> InstanceState | None:
        validate_id(instance_id)
        await self._ensure_initialized()
        info = await self.store.get_instance(instance_id)
        if info is None:
            return None
        return self._state(info, result_type or self._result_types.get(instance_id))

    @overload
    async def wait_for_completion(
        self,
        instance_id: InstanceHandle[R],
        *,
        timeout: float | timedelta | None = ...,
        result_type: None = ...,
    ) -> R: ...

    @overload
    async def wait_for_completion(
        self, instance_id: str, *, timeout: float | timedelta | None = ..., result_type: type[T]
    ) -> T: ...

    @overload
    async def wait_for_completion(
        self, instance_id: str, *, timeout: float | timedelta | None = ..., result_type: None = ...
    ) -> Any: ...

    async def wait_for_completion(
        self,
        instance_id: str,
        *,
        timeout: float | timedelta | None = None,
        result_type: Any = None,
    ) -> Any:
        """Wait until the instance ends; return its output (typed by the orchestration's return
        annotation when ``instance_id`` is the :class:`InstanceHandle` that ``start`` returned,
        or by ``result_type``).

        Raises OrchestrationFailedError, OrchestrationCancelledError, WaitTimeoutError (the
        instance may still finish later) or InstanceNotFoundError.
        """
        state = await self.wait_for_state(instance_id, timeout=timeout, result_type=result_type)
        if state.status is InstanceStatus.COMPLETED:
            return state.output
        error = state.error or FailureDetails("application", "Unknown", "no details recorded")
        if state.status is InstanceStatus.CANCELLED:
            raise OrchestrationCancelledError(instance_id, error.message)
        raise OrchestrationFailedError(instance_id, error)

    async def wait_for_state(
        self,
        instance_id: str,
        *,
        timeout: float | timedelta | None = None,
        result_type: Any = None,
    ) -> InstanceState:
        """Wait until the instance is terminal and return its state (no exception on failure)."""
        validate_id(instance_id)
        seconds = _seconds(timeout)
        await self._ensure_initialized()
        deadline = None if seconds is None else anyio.current_time() + seconds
        # the store's completion channel wakes this wait when the instance ends; a re-read
        # every second (InstanceSignal.reread_s) covers a lost message; with no signal, it polls
        async with self.store.instance_signals(instance_id) as signal:
            delay = _POLL_START_S
            while True:
                info = await self.store.get_instance(instance_id)
                if info is None:
                    raise InstanceNotFoundError(f"no instance {instance_id!r}")
                if info.status.is_terminal:
                    return self._state(info, result_type or self._result_types.get(instance_id))
                if not await signal.pause(delay, deadline):
                    raise WaitTimeoutError(
                        f"instance {instance_id!r} still {info.status.value} after {seconds}s"
                    )
                delay = min(delay * 1.5, _POLL_MAX_S)

    async def list_instances(
        self,
        *,
        status: InstanceStatus | str | None = None,
        name: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
        newest_first: bool = False,
    ) -> InstanceStatePage:
        """One page of instances, oldest first unless ``newest_first`` (pass ``next_cursor``
        back, with the same filters and order, for the next)."""
        if limit < 1:
            raise ValidationError("limit must be >= 1")
        try:
            wanted = InstanceStatus(status) if status is not None else None
        except ValueError:
            known = ", ".join(s.value for s in InstanceStatus)
            raise ValidationError(f"unknown status {status!r} (one of {known})") from None
        await self._ensure_initialized()
        page = await self.store.list_instances(
            status=wanted,
            name=name,
            created_after_ms=int(created_after.timestamp() * 1000) if created_after else None,
            created_before_ms=int(created_before.timestamp() * 1000) if created_before else None,
            limit=limit,
            cursor=cursor,
            newest_first=newest_first,
        )
        return InstanceStatePage(
            instances=[
                self._state(i, self._result_types.get(i.instance_id)) for i in page.instances
            ],
            next_cursor=page.next_cursor,
        )

    async def list_held(self, *, name: str | None = None, limit: int = 100) -> list[InstanceState]:
        """Instances a worker holds because their code no longer matches their history (at
        most ``limit``, oldest first): the running and pending instances with a held marker."""
        if limit < 1:
            raise ValidationError("limit must be >= 1")
        held: list[InstanceState] = []
        for status in (InstanceStatus.RUNNING, InstanceStatus.PENDING):
            cursor: str | None = None
            while len(held) < limit:
                page = await self.list_instances(status=status, name=name, limit=500, cursor=cursor)
                held += [s for s in page.instances if s.held is not None]
                cursor = page.next_cursor
                if cursor is None:
                    break
        return held[:limit]

    async def get_history(self, instance_id: str, execution_id: int | None = None) -> list[Any]:
        """The decoded history events of one execution (default: the current one)."""
        validate_id(instance_id)
        await self._ensure_initialized()
        raw = await self.store.read_history(instance_id, execution_id)
        try:
            return core.decode_history(raw)
        except CodecError as exc:
            raise CodecError(f"the history of {instance_id!r}: {exc}") from exc

    # -- decoding ------------------------------------------------------------------------------
    def _decode(self, data: bytes | None, type_: Any = None) -> Any:
        if data is None:
            return None
        if type_ is not None:
            return self.codec.decode(data, type_)
        return self.codec.decode(data)

    def _state(self, info: InstanceInfo, result_type: Any) -> InstanceState:
        return InstanceState(
            instance_id=info.instance_id,
            name=info.name,
            version=info.version,
            status=info.status,
            execution_id=info.execution_id,
            created_at=_dt(info.created_at_ms),
            updated_at=_dt(info.updated_at_ms),
            completed_at=_dt(info.completed_at_ms) if info.completed_at_ms is not None else None,
            parent_instance_id=info.parent_instance_id,
            output=self._decode(info.output, result_type),
            error=core.decode_failure(info.error) if info.error is not None else None,
            custom_status=self._decode(info.custom_status),
            input=self._decode(info.input),
            held=info.held,
            held_since=_dt(info.held_at_ms) if info.held_at_ms is not None else None,
        )


@dataclass(frozen=True, slots=True)
class ResetInfo:
    """What ``client.reset`` did: execution ``execution_id`` began as events 1..``from_event``
    of execution ``from_execution`` (which stays readable)."""

    instance_id: str
    from_execution: int
    from_event: int
    execution_id: int
    reapplied_events: int = 0  # events raised after the point, delivered again


def _operator() -> str:
    """``user@host`` of this process: who reset an instance, when the caller does not say."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except Exception:  # no login name (containers): the host alone
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


# -- core glue -------------------------------------------------------------------------------
def _registered_start_limit(orchestration: Any, app: Any) -> Limit | None:
    """The ``limit`` an orchestration was registered with (by name: on the client's app)."""
    if not isinstance(orchestration, str):
        limit: Limit | None = core.orchestration_metadata(orchestration).limit
        return limit
    if app is None:
        return None
    registered: Limit | None = app.get_orchestration(orchestration).limit
    return registered


def _start_message(
    instance_id: str,
    name: str,
    version: str,
    encoded_input: bytes,
    trace: dict[str, str] | None = None,
) -> tuple[str, bytes]:
    message = core.start_message(name=name, version=version, input=encoded_input, trace=trace)
    # Unique per start() call: a transport-level retry re-sends the same id (idempotent), while
    # a second start() of the same instance id is a new request that the policy decides on.
    return ids.client_message_id("start", uuid.uuid4().hex), core.encode_message(message)
