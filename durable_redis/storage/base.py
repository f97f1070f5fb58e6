"""The Store contract: everything the runtime and client need from Redis, at the byte level.

The store never decodes payloads: history events, queue messages and work items are opaque
``bytes`` produced by ``durable_redis.core``. What the store needs to route and fence work is
passed beside the bytes (instance id, activity key, session id, visible-at time).

Times: every ``*_ms`` duration is in milliseconds; every absolute time (``visible_at_ms``,
timestamps in records) is milliseconds since the epoch **on the Redis server's clock**
(``Store.server_time_ms()``), which is the only clock leases, visibility and timers use.

Ids: ``activity_key`` is ``f"{execution_id}:{activity_id}"``: unique per instance. ``message_id``
is chosen by the sender and deterministic (a retry re-sends the same id), so every enqueue is
idempotent: a message id already queued or already consumed by the instance's current turn
commit is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

# The turn contract (one definition, shared with core); re-exported as part of the Store contract.
from durable_redis.contract import (
    InstanceCreate,
    InstanceStatus,
    NewWorkItem,
    OutboundMessage,
    TurnCommit,
)

__all__ = [
    "ClaimedInstance",
    "ExistingInstancePolicy",
    "InstanceCreate",
    "InstanceInfo",
    "InstancePage",
    "InstanceSignal",
    "InstanceStatus",
    "LostSessions",
    "NewWorkItem",
    "OrchestrationLease",
    "OutboundMessage",
    "QueueDepths",
    "QueuedMessage",
    "SessionRef",
    "Store",
    "TurnCommit",
    "WorkBatch",
    "WorkItemLease",
    "WorkTake",
]


class InstanceSignal:
    """What :meth:`Store.instance_signals` yields: ``await wait(timeout_s)`` returns when the
    instance ended, was deleted or recorded an update's reply since the last wait (or since
    the signal was opened), else after ``timeout_s``. ``live`` is False when no signal can come
    (then a waiter polls)."""

    __slots__ = ("_alive", "event")

    # while live, a waiter re-reads this often anyway (a message lost with a connection)
    reread_s = 1.0

    def __init__(self, alive: Callable[[], bool]) -> None:
        self.event = asyncio.Event()
        self._alive = alive  # () -> whether the connection that carries the signals is up

    @property
    def live(self) -> bool:
        return self._alive()

    async def wait(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), max(0.0, timeout_s))
        self.event.clear()

    async def pause(self, poll_s: float, deadline: float | None) -> bool:
        """A waiter's pause between two reads: until the signal, at most ``reread_s`` while
        live, else ``poll_s`` (its poll), never past ``deadline`` (the event loop's clock,
        ``anyio.current_time()``); False, at once, if the deadline has passed."""
        pause = self.reread_s if self.live else poll_s
        if deadline is not None:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            pause = min(pause, remaining)
        await self.wait(pause)
        return True


class ExistingInstancePolicy(enum.StrEnum):
    """What ``create_instance`` does when the id already exists."""

    FAIL = "fail"  # raise InstanceExistsError (default)
    IGNORE = "ignore"  # keep the existing instance, enqueue nothing, return False
    TERMINATE_IF_DONE = "replace_if_terminal"  # replace a terminal instance; running -> error


@dataclass(frozen=True, slots=True)
class SessionRef:
    instance_id: str
    session_id: str


class LostSessions(list[SessionRef]):
    """Sessions a worker no longer owns. ``closed``: those whose record is gone (closed by their
    orchestration, or purged when it ended); the others were taken over by another worker after
    this one's lease expired."""

    closed: frozenset[SessionRef]

    def __init__(self, lost: Iterable[SessionRef] = (), closed: Iterable[SessionRef] = ()) -> None:
        super().__init__(lost)
        self.closed = frozenset(closed)


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    instance_id: str
    name: str
    version: str
    status: InstanceStatus
    execution_id: int  # current execution, 1-based; 0 before the first turn
    created_at_ms: int
    updated_at_ms: int
    completed_at_ms: int | None = None
    parent_instance_id: str | None = None
    output: bytes | None = None  # encoded by core's codec
    error: bytes | None = None  # encoded FailureDetails
    custom_status: bytes | None = None
    input: bytes | None = None  # the current execution's input
    # set while a worker holds the instance because its code no longer matches its history
    # (the divergence, as text); cleared by the next committed turn
    held: str | None = None
    held_at_ms: int | None = None
    fail_requested: bool = False  # an operator asked to fail it at its next held turn


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    message_id: str
    data: bytes
    attempt: int  # 1 on first fetch, +1 on every fetch of this message


@dataclass(frozen=True, slots=True)
class OrchestrationLease:
    """One locked instance with its visible messages and its current execution's history."""

    instance_id: str
    token: str  # fencing token; present it to commit / renew / abandon
    lease_until_ms: int  # server clock
    fetched_at_ms: int  # server clock when the lock was taken: the turn's "now"
    execution_id: int  # current execution (0 if the instance record has none yet)
    history: Sequence[bytes]  # events of `execution_id`, in order
    messages: Sequence[QueuedMessage]  # tagged with this lock; others stay queued
    attempt: int  # max attempt over `messages`
    instance: InstanceInfo | None
    # deliveries of `messages` before this one that ended without a commit or a hand-back
    # (the worker died during the turn); 0 where the lock path does not count them
    crashes: int = 0


@dataclass(frozen=True, slots=True)
class WorkItemLease:
    item_id: str
    token: str
    instance_id: str
    activity_key: str
    session_id: str | None
    data: bytes
    attempt: int
    lease_until_ms: int


class WorkBatch(list[WorkItemLease]):
    """The items one fetch leased, and ``sessions_lost``: those of the checked sessions (see
    ``fetch_work_items``) that are no longer the worker's."""

    sessions_lost: LostSessions

    def __init__(
        self, items: Iterable[WorkItemLease] = (), sessions_lost: LostSessions | None = None
    ) -> None:
        super().__init__(items)
        self.sessions_lost = sessions_lost if sessions_lost is not None else LostSessions()


@dataclass(frozen=True, slots=True)
class WorkTake:
    """Ask ``commit_turn`` to lease up to ``limit`` of the turn's new plain work items that are
    visible now to ``worker_id`` (the committing worker runs them without a fetch)."""

    worker_id: str
    limit: int
    lock_ms: int


@dataclass(frozen=True, slots=True)
class ClaimedInstance:
    """An instance ``commit_turn_and_claim`` locked for the committing worker's next turn
    (phase 1 of a fetch); ``lock_claimed`` turns it into a lease."""

    instance_id: str
    token: str


@dataclass(frozen=True, slots=True)
class InstancePage:
    instances: Sequence[InstanceInfo]
    next_cursor: str | None  # pass back to list_instances for the next page; None = last page


@dataclass(frozen=True, slots=True)
class QueueDepths:
    orchestration_messages: int
    work_items: int
    session_work_items: int
    timers: int  # messages with a future visible time
    extra: dict[str, int] = field(default_factory=dict)


@runtime_checkable
class Store(Protocol):
    """What the runtime and client use. ``RedisStore`` is the implementation."""

    namespace: str

    # -- lifecycle ---------------------------------------------------------------------------
    async def initialize(self) -> None:
        """Create the namespace metadata if absent; verify it otherwise.

        Raises NamespaceMissingError if the namespace had data (a marker) but its metadata is
        gone; ConfigurationError if the server's maxmemory-policy is not ``noeviction`` and the
        store was not created with ``allow_unsafe_eviction=True``.
        """
        ...

    async def close(self) -> None: ...

    async def server_time_ms(self) -> int: ...

    # -- orchestration queue -----------------------------------------------------------------
    async def create_limited_instance(
        self,
        instance_id: str,
        create: InstanceCreate,
        message_id: str,
        start_message: bytes,
        *,
        flow_key: str,
        flow_mode: str,
        policy: ExistingInstancePolicy = ExistingInstancePolicy.FAIL,
        visible_at_ms: int | None = None,
    ) -> tuple[str, bool]:
        """``create_instance`` judged by the flow key's ``flow_mode`` ("singleton", "debounce
        <ms>", "throttle <ms>"; docs/routing.md "Orchestration starts") in the same script:
        (the id of the instance that holds this start, True if it was created now). A kept
        start is the key's running (singleton), pending (debounce: its input replaced, its
        start pushed) or throttled instance's. ``instance_id`` must be in the key's partition
        (``id_for_key``)."""
        ...

    def id_for_key(self, instance_id: str | None, flow_key: str) -> str:
        """An id in ``flow_key``'s partition: ``instance_id`` when it hashes there (always
        with one partition), else with the first ``:k`` suffix that does; None: a fresh one."""
        ...

    async def create_instance(
        self,
        instance_id: str,
        create: InstanceCreate,
        message_id: str,
        start_message: bytes,
        *,
        policy: ExistingInstancePolicy = ExistingInstancePolicy.FAIL,
        visible_at_ms: int | None = None,
    ) -> bool:
        """Atomically create the instance record (status PENDING) and enqueue its start message.

        Returns True if created, False if it existed and ``policy`` is IGNORE; raises
        InstanceExistsError under FAIL (or under TERMINATE_IF_DONE for a running instance).
        """
        ...

    async def enqueue_message(
        self,
        instance_id: str,
        message_id: str,
        data: bytes,
        *,
        visible_at_ms: int | None = None,
    ) -> bool:
        """Enqueue a message for an existing instance. False if the message id was a duplicate.

        Raises InstanceNotFoundError if the instance does not exist.
        """
        ...

    async def fetch_orchestration(
        self, *, lock_ms: int, wait_ms: int = 0, skip: Sequence[str] = ()
    ) -> OrchestrationLease | None:
        """Lock one instance with visible messages (FIFO by oldest visible message), passing
        over the instances in ``skip`` (left queued for other workers: version routing).

        Blocks up to ``wait_ms`` for work (no polling: wakes within milliseconds of an enqueue or
        a timer coming due). Returns None only if nothing was eligible.
        """
        ...

    async def commit_turn(
        self, lease: OrchestrationLease, commit: TurnCommit, *, take: WorkTake | None = None
    ) -> list[WorkItemLease]:
        """Apply a turn atomically and release the lock. LeaseLostError changes nothing.

        Deletes the lease's tagged messages; messages that arrived during the turn stay queued.
        Terminal statuses purge every session of the instance. With ``take``, the new plain
        work items visible now are leased to ``take.worker_id`` in the same call (at most
        ``take.limit``, and only while no older plain item waits, so FIFO holds) and returned,
        as ``fetch_work_items`` would return them; otherwise the result is empty. A re-sent
        commit (lost reply) returns nothing: items it took come back when their lease expires.

        Optional shortcuts a store class may offer (``RedisStore`` does; the runtime uses them
        when the class has them, docs/storage.md): ``commit_turn_and_claim`` + ``lock_claimed``
        (the commit claims the committing fetch loop's next instance).
        """
        ...

    async def renew_orchestration(self, lease: OrchestrationLease, lock_ms: int) -> int:
        """Extend the lock; returns the new lease_until_ms. LeaseLostError if stale/expired."""
        ...

    async def abandon_orchestration(
        self,
        lease: OrchestrationLease,
        *,
        delay_ms: int = 0,
        count_attempt: bool = True,
        until_start: bool = False,
        held: str | None = None,
    ) -> bool:
        """Release the lock; messages become visible after ``delay_ms``.

        ``held``: the instance is held (its code diverged from its history): the text is stored
        as the record's ``held`` field until a turn of it commits.

        ``count_attempt=False`` gives back the attempt the fetch counted (never below 0).
        ``until_start``: an instance not started yet whose start message was not in the lease
        (``start_at``, or a back-off): its messages stay queued until the start is visible too;
        False (nothing changed, the lock still held) if no start message is queued for later.
        """
        ...

    # -- activity queue ----------------------------------------------------------------------
    async def fetch_work_items(
        self,
        worker_id: str,
        *,
        limit: int,
        lock_ms: int,
        wait_ms: int = 0,
        session_lock_ms: int | None = None,
        claim_new_sessions: bool = True,
        check_sessions: Sequence[SessionRef] = (),
        queues: Sequence[str] = ("default",),
    ) -> WorkBatch:
        """Lease up to ``limit`` items of the ``queues`` served (the first one rotating per
        fetch; a paused queue is skipped), by priority then FIFO among the items this worker
        may take; one blocking wait covers every queue served.

        ``session_lock_ms=None``: plain (non-session) work only. Otherwise also the work of
        sessions this worker owns (refreshing their lease), and, if ``claim_new_sessions``, the
        work of unowned or expired sessions, which it claims atomically (one winner). Work of a
        session another live worker owns is skipped and never blocks the items behind it.

        ``check_sessions`` (a worker at its session limit: the sessions it owns): each one no
        longer this worker's frees the claim of one new session in this fetch, and is reported
        in ``sessions_lost``; a purge of one of this worker's sessions wakes the waiting fetch.
        """
        ...

    async def ack_work_item(
        self,
        lease: WorkItemLease,
        message_id: str,
        completion: bytes,
        *,
        lock_ms: int | None = None,
    ) -> OrchestrationLease | None:
        """Delete the item and enqueue ``completion`` to its instance, atomically.

        LeaseLostError (nothing changed) if the token is stale, the lease expired or the item was
        cancelled (lock stealing). With ``lock_ms``, if the instance is not locked, the same call
        also locks it for the caller for ``lock_ms`` and returns its lease, as
        ``fetch_orchestration`` would (the caller runs the turn; nobody is woken for it);
        otherwise it returns None.
        """
        ...

    async def renew_work_items(
        self, leases: Sequence[WorkItemLease], lock_ms: int, session_lock_ms: int | None = None
    ) -> list[str]:
        """Extend leases (and the session lease of session work). Returns item ids LOST."""
        ...

    async def abandon_work_item(
        self, lease: WorkItemLease, *, delay_ms: int = 0, count_attempt: bool = True
    ) -> None: ...

    # -- sessions ----------------------------------------------------------------------------
    async def renew_sessions(
        self, worker_id: str, sessions: Sequence[SessionRef], lock_ms: int
    ) -> LostSessions:
        """Extend session leases this worker owns. Returns the sessions LOST (gone/other owner)."""
        ...

    async def release_sessions(
        self,
        worker_id: str,
        sessions: Sequence[SessionRef],
        queues: Sequence[str] = ("default",),
    ) -> None:
        """Make the sessions claimable at once (no-op for sessions this worker does not own),
        waking the workers of ``queues`` (the queues the releasing worker serves)."""
        ...

    # -- management --------------------------------------------------------------------------
    async def get_instance(self, instance_id: str) -> InstanceInfo | None: ...

    def instance_signals(self, instance_id: str) -> AbstractAsyncContextManager[InstanceSignal]:
        """``async with store.instance_signals(iid) as signal``: see :class:`InstanceSignal`.
        Open it before the read it guards; a signal between that read and the wait is kept."""
        ...

    async def request_fail_held(self, instance_id: str) -> bool:
        """Mark a held instance (``InstanceInfo.held``) to be failed at its next retried turn
        instead of held again; False (nothing changed) if it is not held."""
        ...

    async def reset_instance(
        self,
        instance_id: str,
        *,
        execution_id: int,
        history_len: int,
        keep: int,
        started: bytes,
        reset_event: bytes,
        wake: tuple[str, bytes],
        reapply: Sequence[tuple[str, bytes]] = (),
    ) -> int | None:
        """Start execution ``execution_id + 1`` as events 1..``keep`` of ``execution_id``
        (``started`` replacing the first) plus ``reset_event``, in one script; returns the new
        execution id, or None (nothing changed) if its execution or history moved since the
        caller read them. ``reapply``: (message id, message) to queue first, in order.
        InstanceRunningError if it runs and is not held, InstanceNotFoundError if it does not
        exist (lua/reset_instance.lua)."""
        ...

    async def read_history(self, instance_id: str, execution_id: int | None = None) -> list[bytes]:
        """Events of one execution (default: the current one). Empty for an unknown instance."""
        ...

    async def list_instances(
        self,
        *,
        status: InstanceStatus | None = None,
        name: str | None = None,
        created_after_ms: int | None = None,
        created_before_ms: int | None = None,
        limit: int = 100,
        cursor: str | None = None,
        newest_first: bool = False,
    ) -> InstancePage:
        """One page, oldest first unless ``newest_first``; pass ``next_cursor`` back (with the
        same filters and order) for the next."""
        ...

    async def list_children(self, instance_id: str) -> list[str]: ...

    async def delete_instance(self, instance_id: str, *, force: bool = False) -> int:
        """Delete an instance and its whole tree of children. Returns instances deleted."""
        ...

    async def prune_executions(self, instance_id: str, *, keep_last: int = 1) -> int: ...

    async def queue_depths(self) -> QueueDepths: ...

    async def count_by_status(self) -> dict[InstanceStatus, int]: ...

    async def run_janitor(self, *, retention_ms: int, batch: int = 200) -> int:
        """Remove terminal instances completed more than ``retention_ms`` ago. Returns count."""
        ...

    # -- talking to running orchestrations (docs/messaging.md; storage/messaging.py) ----------
    async def get_values(
        self, instance_id: str, keys: Sequence[str] | None = None
    ) -> dict[str, bytes]:
        """The instance's key-value state (every key, or the given ones that are set)."""
        ...

    async def get_update_reply(self, instance_id: str, update_id: str) -> bytes | None: ...

    async def append_stream(self, instance_id: str, data: bytes) -> str:
        """Append to the instance's progress stream; returns the item's offset."""
        ...

    async def read_stream(
        self, instance_id: str, *, after: str = "0", count: int = 100, block_ms: int | None = None
    ) -> list[tuple[str, bytes]]:
        """Progress stream entries after offset ``after``; ``block_ms`` waits for the first."""
        ...
