"""The turn contract: what one orchestration turn decides, as core produces it and storage
stores it (``core.to_commit(result) -> TurnCommit -> Store.commit_turn``).

A leaf module (standard library only), so ``core`` and ``storage`` both import it without
importing each other. It holds the one definition of the instance status set, the failure kinds,
and the commit with its parts. The commit carries encoded bytes only (events, work items,
messages), so storage never decodes a payload.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "FailureKind",
    "InstanceCreate",
    "InstanceStatus",
    "NewWorkItem",
    "OutboundMessage",
    "TurnCommit",
]


class InstanceStatus(enum.StrEnum):
    """Status of an instance's current execution. The definition order is the order of the
    status index keys wherever a script takes them (``storage.keys.STATUS_ORDER``, and the
    ``STATUSES`` list of ``lua/includes/common.lua``, pinned to it by a test)."""

    PENDING = "pending"  # created, first turn not yet committed
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    CONTINUED_AS_NEW = "continued_as_new"  # transient: only between a CAN commit and next turn

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({InstanceStatus.COMPLETED, InstanceStatus.FAILED, InstanceStatus.CANCELLED})


class FailureKind(enum.StrEnum):
    """``FailureDetails.kind``: why a step or an instance failed (stored as its string)."""

    APPLICATION = "application"  # user code raised
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    POISON = "poison"  # attempts exhausted by crashes, or undecodable stored data
    NONDETERMINISM = "nondeterminism"
    CONFIGURATION = "configuration"  # unregistered name, bad session use, limits
    REJECTED = "rejected"  # an update's validator refused it
    HISTORY_LIMIT = "history_limit"


@dataclass(frozen=True, slots=True)
class InstanceCreate:
    """Creates the instance record (if absent) together with a message (a child's start)."""

    name: str
    version: str = ""
    parent_instance_id: str | None = None
    input: bytes | None = None


@dataclass(frozen=True, slots=True)
class NewWorkItem:
    """An activity to enqueue in the instance's partition."""

    activity_key: str  # f"{execution_id}:{activity_id}"
    data: bytes  # encoded core ActivityTask
    session_id: str | None = None
    visible_at_ms: int | None = None
    queue: str | None = None  # None = "default" (docs/routing.md)
    priority: int = 0  # higher first within the queue, FIFO within a level
    flow_key: str | None = None  # flow control by key (docs/routing.md); judged per partition
    flow: str | None = None  # its limits "<concurrency> <rate> <per ms> <burst>" ('-' none)


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """A message to any instance (this one included: timers are messages with a visible time)."""

    instance_id: str
    message_id: str
    data: bytes
    visible_at_ms: int | None = None
    create: InstanceCreate | None = None  # start of a child or detached orchestration


@dataclass(frozen=True, slots=True)
class TurnCommit:
    """The one atomic commit of an orchestration turn."""

    execution_id: int  # the execution the events belong to (new id on continue-as-new start)
    expected_history_len: int  # events of `execution_id` already stored; else LeaseLostError
    events: Sequence[bytes]  # appended, in order
    status: InstanceStatus
    name: str | None = None  # set name/version/input when an execution starts
    version: str | None = None
    input: bytes | None = None
    output: bytes | None = None
    error: bytes | None = None
    set_custom_status: bool = False
    custom_status: bytes | None = None
    work_items: Sequence[NewWorkItem] = ()
    messages: Sequence[OutboundMessage] = ()
    cancelled_work: Sequence[str] = ()  # activity keys; deleted AFTER enqueueing work_items
    sessions_opened: Sequence[str] = ()
    sessions_closed: Sequence[str] = ()  # purged: queued work deleted, in-flight leases stolen
    values: Sequence[tuple[str, bytes | None]] = ()  # key-value state writes (None deletes)
    update_replies: Sequence[tuple[str, bytes]] = ()  # update id -> encoded reply
    stream_items: Sequence[bytes] = ()  # appended to the instance's progress stream
