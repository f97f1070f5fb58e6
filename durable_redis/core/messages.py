"""Messages to an orchestration instance, activity work items, and the helpers that build them.

A :data:`Message` sits in an instance's queue until a turn consumes it; :func:`run_turn` turns
accepted messages into input history events and drops stale or duplicate ones.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field

from durable_redis import ids
from durable_redis.contract import InstanceCreate
from durable_redis.core._serial import Schema
from durable_redis.core.codec import Codec
from durable_redis.errors import FailureDetails, TaskFailedError

__all__ = [
    "ActivityCompleted",
    "ActivityFailed",
    "ActivityTask",
    "CancelRequested",
    "EventRaised",
    "Message",
    "OutgoingMessage",
    "QueueEventRaised",
    "StartOrchestration",
    "SubOrchestrationCompleted",
    "SubOrchestrationFailed",
    "TimerFired",
    "UpdateReply",
    "UpdateRequested",
    "activity_completed",
    "activity_failed",
    "cancel_message",
    "decode_message",
    "decode_reply",
    "decode_task",
    "encode_message",
    "encode_reply",
    "encode_task",
    "event_raised_message",
    "failure_from_exception",
    "start_message",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class StartOrchestration:
    """Starts an execution: the first one (client, parent) or N+1 (continue-as-new to self)."""

    name: str
    input: bytes
    version: str = ""
    execution_id: int = 1
    parent_instance_id: str | None = None
    parent_execution_id: int | None = None
    parent_event_id: int | None = None
    sessions: tuple[str, ...] = ()  # open sessions carried over continue-as-new
    queue_names: tuple[str, ...] | None = None  # unconsumed queue events carried over
    queue_data: tuple[bytes, ...] | None = None
    value_keys: tuple[str, ...] | None = None  # keys of the instance's key-value state
    trace: dict[str, str] | None = field(default=None, hash=False)  # W3C trace context


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityCompleted:
    execution_id: int
    activity_id: int
    result: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityFailed:
    execution_id: int
    activity_id: int
    failure: FailureDetails


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerFired:
    execution_id: int
    timer_id: int
    fire_at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRaised:
    name: str
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class SubOrchestrationCompleted:
    """Sent by a child to its parent; ``execution_id`` is the parent's execution."""

    execution_id: int
    scheduled_id: int
    output: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class SubOrchestrationFailed:
    execution_id: int
    scheduled_id: int
    failure: FailureDetails


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelRequested:
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueEventRaised:
    """An event for the persistent FIFO queue ``queue`` (``ctx.dequeue_event``)."""

    queue: str
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateRequested:
    """A client's update: run handler ``name`` on ``input``; reply under ``update_id``."""

    update_id: str
    name: str
    input: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateReply:
    """The answer to an update: the handler's encoded ``result``, or its ``failure``."""

    result: bytes | None = None
    failure: FailureDetails | None = None


Message = (
    StartOrchestration
    | ActivityCompleted
    | ActivityFailed
    | TimerFired
    | EventRaised
    | SubOrchestrationCompleted
    | SubOrchestrationFailed
    | CancelRequested
    | QueueEventRaised
    | UpdateRequested
)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutgoingMessage:
    """A message a turn sends: timers (to self, ``visible_at_ms``), child starts, results..."""

    instance_id: str
    message_id: str  # deterministic: a re-run of the turn sends the same id
    message: Message
    visible_at_ms: int | None = None
    create: InstanceCreate | None = None  # creates the target's record


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityTask:
    """One activity attempt to run on a worker (encoded into the work item)."""

    instance_id: str
    execution_id: int
    activity_id: int
    name: str
    input: bytes
    session_id: str | None = None
    attempt: int = 1  # retry-policy attempt, 1-based
    timeout_ms: int | None = None  # per-attempt timeout, also enforced by the orchestration
    orchestration_name: str = ""
    first_attempt_id: int | None = None  # retries: the activity id of the first attempt
    trace: dict[str, str] | None = field(default=None, hash=False)  # W3C trace context
    queue: str | None = None  # the work item's queue (None = "default")
    priority: int | None = None  # within its queue, higher first (None = 0)
    flow_key: str | None = None  # flow control by key (docs/routing.md), None = none
    flow: str | None = None  # its limits "<concurrency> <rate> <per ms> <burst>"

    @property
    def activity_key(self) -> str:
        """Unique per instance: ``f"{execution_id}:{activity_id}"`` (the storage work key)."""
        return ids.activity_key(self.execution_id, self.activity_id)

    @property
    def idempotency_key(self) -> str:
        """The same for every attempt of one ``call_activity`` and every redelivery of each."""
        first = self.first_attempt_id if self.first_attempt_id is not None else self.activity_id
        return ids.activity_attempt_id(self.instance_id, self.execution_id, first)

    @property
    def completion_message_id(self) -> str:
        """Message id of this attempt's completion (the same on every re-run)."""
        return ids.activity_completion_id(self.instance_id, self.activity_key)


_MESSAGES: Schema[Message] = Schema(
    "message",
    (
        StartOrchestration,
        ActivityCompleted,
        ActivityFailed,
        TimerFired,
        EventRaised,
        SubOrchestrationCompleted,
        SubOrchestrationFailed,
        CancelRequested,
        QueueEventRaised,
        UpdateRequested,
    ),
)
_REPLIES: Schema[UpdateReply] = Schema("update reply", (UpdateReply,))
_TASKS: Schema[ActivityTask] = Schema("activity task", (ActivityTask,))


def encode_message(message: Message) -> bytes:
    return _MESSAGES.encode(message)


def decode_message(data: bytes) -> Message:
    """CodecError for bad bytes, unknown kinds or newer schema versions."""
    return _MESSAGES.decode(data)


def encode_reply(reply: UpdateReply) -> bytes:
    return _REPLIES.encode(reply)


def decode_reply(data: bytes) -> UpdateReply:
    """CodecError for bad bytes."""
    return _REPLIES.decode(data)


def encode_task(task: ActivityTask) -> bytes:
    return _TASKS.encode(task)


def decode_task(data: bytes) -> ActivityTask:
    return _TASKS.decode(data)


# -- builders -----------------------------------------------------------------------------------
def start_message(
    *,
    name: str,
    input: bytes | None = None,
    version: str = "",
    trace: dict[str, str] | None = None,
) -> StartOrchestration:
    """The first StartOrchestration of a new instance (client side); ``trace`` is the W3C trace
    context of the client's span, if it traces."""
    return StartOrchestration(
        name=name, input=input if input is not None else b"", version=version, trace=trace
    )


def event_raised_message(name: str, data: bytes) -> EventRaised:
    return EventRaised(name=name, data=data)


def cancel_message(reason: str = "") -> CancelRequested:
    return CancelRequested(reason=reason)


def activity_completed(task: ActivityTask, value: object, codec: Codec) -> ActivityCompleted:
    """The completion message for ``task`` (its id is ``task.completion_message_id``).

    Raises CodecError if ``value`` cannot be encoded; report that with :func:`activity_failed`.
    """
    return ActivityCompleted(
        execution_id=task.execution_id, activity_id=task.activity_id, result=codec.encode(value)
    )


def activity_failed(task: ActivityTask, error: BaseException | FailureDetails) -> ActivityFailed:
    """The failure message for ``task``: an exception (type, message, traceback) or details."""
    details = error if isinstance(error, FailureDetails) else failure_from_exception(error)
    return ActivityFailed(
        execution_id=task.execution_id, activity_id=task.activity_id, failure=details
    )


def failure_from_exception(exc: BaseException, *, kind: str = "application") -> FailureDetails:
    """Portable details of ``exc``: type name, message and traceback text (never pickled)."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    for failed in _task_failures(exc):  # where the activity or child raised, not only where
        if failed.details.traceback.strip():  # the orchestration re-raised it
            text += f"\nThe original error, {failed.details}:\n{failed.details.traceback}"
    return FailureDetails(
        kind=kind, type_name=type(exc).__name__, message=_message(exc), traceback=text
    )


def _task_failures(exc: BaseException) -> list[TaskFailedError]:
    """The TaskFailedErrors in ``exc``: itself, its group's members, its causes."""
    found: list[TaskFailedError] = []
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, TaskFailedError):
            found.append(current)
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return found


def _message(exc: BaseException) -> str:
    """``str(exc)``; for an exception group (a TaskGroup's), its causes too, so the one line
    reads "... (1 sub-exception): ActivityFailedError: activity 'charge' failed: ..."."""
    if not isinstance(exc, BaseExceptionGroup):
        return str(exc)
    causes = "; ".join(f"{type(e).__name__}: {_message(e)}" for e in exc.exceptions)
    return f"{exc}: {causes}"
