"""History events: the append-only record of one execution of an orchestration.

Every event carries a dense, 1-based ``event_id`` (its position in the execution's history plus
one) and the ``timestamp_ms`` of the turn that wrote it (Redis server time; ``ctx.now()`` reads
it back on replay). Events that complete or cancel earlier work point at the scheduling event's id.

Two families (see docs/history-events.md):

* **inputs** come from outside the code: the start, completions, raised events, cancel requests;
* **commands** are what the orchestration code did: schedule, subscribe, open a session, finish.
  On replay the code must emit the same commands in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from durable_redis.core._serial import Schema
from durable_redis.errors import CodecError, FailureDetails

__all__ = [
    "COMMAND_EVENTS",
    "INPUT_EVENTS",
    "TERMINAL_EVENTS",
    "ActivityCancelRequested",
    "ActivityCompleted",
    "ActivityFailed",
    "ActivityScheduled",
    "CustomStatusSet",
    "DetachedOrchestrationStarted",
    "EventRaised",
    "EventSent",
    "EventSubscribed",
    "ExecutionReset",
    "HistoryEvent",
    "OrchestrationCancelRequested",
    "OrchestrationCompleted",
    "OrchestrationContinuedAsNew",
    "OrchestrationFailed",
    "OrchestrationStarted",
    "PatchMarker",
    "QueueDequeued",
    "QueueEventRaised",
    "SessionClosed",
    "SessionOpened",
    "StreamAppended",
    "SubOrchestrationCancelRequested",
    "SubOrchestrationCompleted",
    "SubOrchestrationFailed",
    "SubOrchestrationScheduled",
    "TimerCreated",
    "TimerFired",
    "UpdateCompleted",
    "UpdateReceived",
    "ValueSet",
    "decode_event",
    "decode_history",
    "describe_event",
    "encode_event",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Event:
    event_id: int
    timestamp_ms: int


# -- orchestration lifecycle --------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class OrchestrationStarted(_Event):
    """Input. First event of every execution."""

    instance_id: str
    name: str
    version: str
    input: bytes
    execution_id: int = 1
    parent_instance_id: str | None = None
    parent_execution_id: int | None = None
    parent_event_id: int | None = None
    sessions: tuple[str, ...] = ()  # sessions still open, carried over continue-as-new
    # carried over continue-as-new (None, not written, when empty; docs/messaging.md):
    queue_names: tuple[str, ...] | None = None  # unconsumed queue events, oldest first
    queue_data: tuple[bytes, ...] | None = None
    value_keys: tuple[str, ...] | None = None  # keys of the instance's key-value state
    # the W3C trace context of the start (docs/operations.md, "Traces"); None when not traced
    trace: dict[str, str] | None = field(default=None, hash=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class OrchestrationCompleted(_Event):
    """Command, terminal. The orchestration returned ``output``."""

    output: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class OrchestrationFailed(_Event):
    """Command, terminal. Failed (raised, cancelled, poison, nondeterminism, configuration)."""

    failure: FailureDetails


@dataclass(frozen=True, slots=True, kw_only=True)
class OrchestrationContinuedAsNew(_Event):
    """Command, terminal for this execution; execution N+1 starts with ``input``."""

    input: bytes
    version: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OrchestrationCancelRequested(_Event):
    """Input. A client (or the parent) asked to cancel; the turn ends the orchestration."""

    reason: str = ""


# -- activities ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityScheduled(_Event):
    """Command. Its ``event_id`` is the activity id (work key ``f"{execution_id}:{event_id}"``)."""

    name: str
    input: bytes
    session_id: str | None = None
    attempt: int = 1
    timeout_ms: int | None = None
    first_attempt_id: int | None = None  # a retry: the activity id of the call's first attempt
    trace: dict[str, str] | None = field(default=None, hash=False)  # of the turn that scheduled it
    local: bool | None = None  # True: ctx.call_local_activity (run inside the turn, not dispatched)
    queue: str | None = None  # the work item's queue (None = "default"; docs/routing.md)
    priority: int | None = None  # higher first within its queue (None = 0)
    flow_key: str | None = None  # the call's flow key (its Limit; docs/routing.md), None = none
    flow: str | None = None  # its limits "<concurrency> <rate> <per ms> <burst>" ('-' = none)


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityCompleted(_Event):
    """Input. The activity ``activity_id`` returned ``result``."""

    activity_id: int
    result: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityFailed(_Event):
    """Input. The activity raised (or was poisoned: ``failure.kind == "poison"``)."""

    activity_id: int
    failure: FailureDetails


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityCancelRequested(_Event):
    """Command. The code abandoned the activity (when_any loser, task group exit, timeout)."""

    activity_id: int
    reason: str = ""


# -- timers -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class TimerCreated(_Event):
    """Command. A durable timer due at ``fire_at_ms``."""

    fire_at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerFired(_Event):
    """Input. Timer ``timer_id`` came due."""

    timer_id: int
    fire_at_ms: int


# -- external events ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class EventSubscribed(_Event):
    """Command. The code waits for the next external event called ``name``."""

    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRaised(_Event):
    """Input. An external event arrived; buffered until a subscription takes it."""

    name: str
    data: bytes


# -- sub-orchestrations -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class SubOrchestrationScheduled(_Event):
    """Command. A child orchestration ``instance_id`` was started; its result comes back."""

    name: str
    version: str
    instance_id: str
    input: bytes
    trace: dict[str, str] | None = field(default=None, hash=False)  # of the turn that started it


@dataclass(frozen=True, slots=True, kw_only=True)
class SubOrchestrationCompleted(_Event):
    """Input. The child scheduled at ``scheduled_id`` completed."""

    scheduled_id: int
    output: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class SubOrchestrationFailed(_Event):
    """Input. The child scheduled at ``scheduled_id`` failed or was cancelled."""

    scheduled_id: int
    failure: FailureDetails


@dataclass(frozen=True, slots=True, kw_only=True)
class SubOrchestrationCancelRequested(_Event):
    """Command. The code abandoned the child; a cancel request is sent to it."""

    scheduled_id: int
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DetachedOrchestrationStarted(_Event):
    """Command. A fire-and-forget orchestration was started (no result comes back)."""

    name: str
    version: str
    instance_id: str
    input: bytes
    trace: dict[str, str] | None = field(default=None, hash=False)  # of the turn that started it


# -- misc ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class CustomStatusSet(_Event):
    """Command. ``ctx.set_custom_status`` (encoded value; None clears it)."""

    status: bytes | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionOpened(_Event):
    """Command. Session ``session_id`` opened for this instance."""

    session_id: str
    queue: str | None = None  # the session's queue, if opened with one (docs/routing.md)


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionClosed(_Event):
    """Command. Session ``session_id`` closed (and purged by storage)."""

    session_id: str


# -- talking to running orchestrations (docs/messaging.md) -------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class EventSent(_Event):
    """Command. ``ctx.raise_event``: event ``name`` sent to instance ``instance_id``."""

    instance_id: str
    name: str
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueEventRaised(_Event):
    """Input. An event arrived on the persistent FIFO queue ``queue``."""

    queue: str
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueDequeued(_Event):
    """Command. ``ctx.dequeue_event(queue)``: the code takes the oldest event of ``queue``."""

    queue: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ValueSet(_Event):
    """Command. ``ctx.set_value``: key ``key`` of the instance's state (None deletes it)."""

    key: str
    value: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateReceived(_Event):
    """Input. An update the handler's validator accepted (rejected ones are not recorded)."""

    update_id: str
    name: str
    input: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateCompleted(_Event):
    """Command. The update handler returned ``result`` or raised ``failure``."""

    update_id: str
    result: bytes | None = None
    failure: FailureDetails | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamAppended(_Event):
    """Command. ``ctx.append_stream``: ``data`` appended to the instance's progress stream."""

    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class PatchMarker(_Event):
    """Command. ``ctx.patched(change_id)`` took the new path in an execution that had not
    recorded otherwise (docs/deploying.md); on replay, ``patched`` is True iff it is here."""

    change_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionReset(_Event):
    """Input. An operator reset the instance (``client.reset``, docs/deploying.md): this
    execution began as a copy of events 1..``from_event`` of execution ``from_execution``
    (whose history stays readable); the code runs live from here. On replay a command that
    meets this event passes over it."""

    from_execution: int
    from_event: int
    reason: str = ""
    by: str = ""


HistoryEvent = (
    OrchestrationStarted
    | OrchestrationCompleted
    | OrchestrationFailed
    | OrchestrationContinuedAsNew
    | OrchestrationCancelRequested
    | ActivityScheduled
    | ActivityCompleted
    | ActivityFailed
    | ActivityCancelRequested
    | TimerCreated
    | TimerFired
    | EventSubscribed
    | EventRaised
    | SubOrchestrationScheduled
    | SubOrchestrationCompleted
    | SubOrchestrationFailed
    | SubOrchestrationCancelRequested
    | DetachedOrchestrationStarted
    | CustomStatusSet
    | SessionOpened
    | SessionClosed
    | EventSent
    | QueueEventRaised
    | QueueDequeued
    | ValueSet
    | UpdateReceived
    | UpdateCompleted
    | StreamAppended
    | PatchMarker
    | ExecutionReset
)

INPUT_EVENTS: tuple[type[HistoryEvent], ...] = (
    OrchestrationStarted,
    OrchestrationCancelRequested,
    ActivityCompleted,
    ActivityFailed,
    TimerFired,
    EventRaised,
    SubOrchestrationCompleted,
    SubOrchestrationFailed,
    QueueEventRaised,
    UpdateReceived,
    ExecutionReset,
)
TERMINAL_EVENTS: tuple[type[HistoryEvent], ...] = (
    OrchestrationCompleted,
    OrchestrationFailed,
    OrchestrationContinuedAsNew,
)
COMMAND_EVENTS: tuple[type[HistoryEvent], ...] = (
    *TERMINAL_EVENTS,
    ActivityScheduled,
    ActivityCancelRequested,
    TimerCreated,
    EventSubscribed,
    SubOrchestrationScheduled,
    SubOrchestrationCancelRequested,
    DetachedOrchestrationStarted,
    CustomStatusSet,
    SessionOpened,
    SessionClosed,
    EventSent,
    QueueDequeued,
    ValueSet,
    UpdateCompleted,
    StreamAppended,
    PatchMarker,
)

_SCHEMA: Schema[HistoryEvent] = Schema("history event", (*INPUT_EVENTS, *COMMAND_EVENTS))


def encode_event(event: HistoryEvent) -> bytes:
    """msgpack bytes with a schema version. CodecError for non-events."""
    return _SCHEMA.encode(event)


def decode_event(data: bytes) -> HistoryEvent:
    """Inverse of :func:`encode_event`. CodecError for bad bytes, unknown kinds or versions."""
    return _SCHEMA.decode(data)


def decode_history(records: Sequence[bytes], start: int = 0) -> list[HistoryEvent]:
    """Decode stored events ``records[start:]`` in order.

    A CodecError names the entry that cannot be decoded (its 0-based position, event id
    position + 1, among how many) and why.
    """
    events: list[HistoryEvent] = []
    for i in range(start, len(records)):
        try:
            events.append(_SCHEMA.decode(records[i]))
        except CodecError as exc:
            raise CodecError(
                f"history entry {i} (event {i + 1} of {len(records)}) cannot be decoded: {exc}"
            ) from exc
    return events


_SHORT_FIELDS = (
    "name",
    "queue",
    "key",
    "update_id",
    "session_id",
    "activity_id",
    "timer_id",
    "scheduled_id",
    "instance_id",
    "change_id",
)


def describe_event(event: HistoryEvent) -> str:
    """A short human description, used in NondeterminismError messages."""
    parts = [
        f"{f}={getattr(event, f)!r}"
        for f in _SHORT_FIELDS
        if hasattr(event, f) and not (f == "queue" and getattr(event, f) is None)
    ]
    if isinstance(event, ActivityScheduled | SubOrchestrationScheduled):
        parts.append(f"input={_preview(event.input)}")
    return f"{type(event).__name__}({', '.join(parts)})"


def _preview(data: bytes, limit: int = 80) -> str:
    """The payload as JSON-ish text when it is msgpack (the default codec), else hex."""
    import json

    import msgpack  # type: ignore[import-untyped]

    try:
        value = msgpack.unpackb(data, raw=False, strict_map_key=False)
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=repr)
    except Exception:  # another codec: JSON as it is, anything else (encrypted, ...) as hex
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = ""
        if not text or not text.isprintable():
            return data[:32].hex() + ("..." if len(data) > 32 else "")
    return text if len(text) <= limit else text[: limit - 3] + "..."
