"""The activity dispatcher: batch fetches, runs activities, renews their leases, acks results.

Async activities run on the worker's event loop; sync ones in a bounded thread pool
(``anyio.to_thread``), so the event loop, and with it lease renewal, stays free even while a
CPU-bound sync activity runs, except that a sync one measured fast (``_speed``: its first calls
in the pool all under 1 ms) or marked ``@app.activity(inline=True)`` is called on the loop
itself (no thread hop; it blocks the loop while it runs). One renewal loop renews every
in-flight lease in one batched call (which also extends the session leases of session work) and
then lets the session manager renew idle sessions and release those past their idle timeout.

An activity learns that it should stop through ``ActivityContext``'s cancellation signal: set when
renewal reports its lease lost (its orchestration cancelled it, closed its session or ended),
when its session's lease is lost, or at shutdown once the grace period is over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from typing import Any

import anyio
import anyio.abc

from durable_redis.core import ActivityContext, ActivityTask, App, Codec
from durable_redis.errors import LeaseLostError, NamespaceMissingError, NotRegisteredError
from durable_redis.runtime import _bridge, tracing
from durable_redis.runtime._speed import Speed
from durable_redis.runtime.cancel import CancelCause
from durable_redis.runtime.faults import FaultTracker
from durable_redis.runtime.options import WorkerOptions
from durable_redis.runtime.sessions import SessionEntry, SessionManager
from durable_redis.storage.base import OrchestrationLease, SessionRef, Store, WorkItemLease

__all__ = ["ActivityDispatcher", "runs_alone"]

logger = logging.getLogger(__name__)

_FETCH_ERROR_BACKOFF_S = (0.1, 0.2, 0.5, 1.0, 2.0, 3.0)


class _Run:
    """One in-flight work item."""

    __slots__ = (
        "acking",
        "cancel_event",
        "cancel_reason",
        "hand_back",
        "lease",
        "next_turn",
        "scope",
        "session",
        "verify_session",
    )

    def __init__(self, lease: WorkItemLease) -> None:
        self.lease = lease
        self.scope = anyio.CancelScope()
        self.cancel_event = threading.Event()  # read by sync activities in their thread
        self.cancel_reason: str | None = None
        self.hand_back = False  # on cancellation, abandon the item (without counting an attempt)
        self.session: SessionEntry | None = None
        self.verify_session = False  # fetched while we were releasing it: ask the store first
        self.next_turn: OrchestrationLease | None = None  # the ack locked the instance for us
        # its outcome is being acked: the ack, not a renewal racing it, says if the lease held
        self.acking = False

    def cancel(self, cause: CancelCause, detail: str = "") -> None:
        if self.cancel_reason is None:
            self.cancel_reason = cause.text(detail)
        # A lost session lease: the item may still be ours; give it back for the new owner.
        if cause.hands_back:
            self.hand_back = True
        self.cancel_event.set()
        self.scope.cancel()


class ActivityDispatcher:
    def __init__(
        self,
        app: App,
        store: Store,
        options: WorkerOptions,
        worker_id: str,
        sessions: SessionManager,
        codec: Codec,
    ) -> None:
        self._app = app
        self._store = store
        self._options = options
        self._worker_id = worker_id
        self._sessions = sessions
        self._codec = codec
        self._running: dict[str, _Run] = {}
        self._wakeup = anyio.Event()
        self._idle = anyio.Event()
        self._idle.set()
        self._threads = anyio.CapacityLimiter(options.activity_threads)
        self._speed: dict[str, Speed] = {}  # sync activity -> where it runs (_speed)
        self._unregistered: dict[str, int] = {}
        self.faults = FaultTracker()
        # The redelivered item waiting to run, or running, alone (see _execute_alone).
        self._suspects: set[str] = set()
        self._reserved = 0  # slots promised to commits in flight (reserve_take / adopt)
        # called after every renewal, must not block (the worker heartbeat's pace)
        self.after_renewal: Callable[[], None] | None = None
        # Local hand-off (WorkerOptions.local_handoff): runs the turn of an instance our ack
        # locked; the Worker sets it. The fetch loop's task group and stop event, once started.
        self.on_turn: Callable[[OrchestrationLease], Awaitable[None]] | None = None
        # instances whose orchestration version this worker lacks (version routing): their
        # turn is not handed to it after an ack (set by the Worker)
        self.skips: Callable[[str], bool] = lambda instance_id: False
        self._tg: anyio.abc.TaskGroup | None = None
        self._stopping: anyio.Event | None = None

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def _wake(self) -> None:
        self._wakeup.set()
        self._wakeup = anyio.Event()

    # -- fetch loop ----------------------------------------------------------------------------
    def reserve_take(self, wanted: int) -> int:
        """Reserve up to ``wanted`` slots a commit may lease plain work items into (local
        hand-off); the caller gives them back with :meth:`adopt` (or ``adopt([], n)``) however
        the commit ends, so concurrent commits and the fetch loop never overfill
        ``activity_concurrency``."""
        if self._tg is None or self._stopping is None or self._stopping.is_set() or self._suspects:
            return 0
        free = self._options.activity_concurrency - len(self._running) - self._reserved
        n = max(0, min(self._options.batch_size, free, wanted))
        self._reserved += n
        return n

    def adopt(self, leases: list[WorkItemLease], reserved: int) -> None:
        """Run work items a commit of this worker leased to it (fresh plain items, attempt 1),
        and give back the ``reserved`` slots of :meth:`reserve_take`."""
        self._reserved -= reserved
        if not leases:
            self._wake()  # unused reserved slots are free for the fetch loop again
            return
        assert self._tg is not None
        for lease in leases:
            run = _Run(lease)
            self._running[lease.item_id] = run
            self._idle = anyio.Event() if self._idle.is_set() else self._idle
            self._tg.start_soon(self._execute, run)

    async def fetch_loop(self, stopping: anyio.Event, tg: anyio.abc.TaskGroup) -> None:
        self._tg, self._stopping = tg, stopping
        errors = 0
        options = self._options
        while not stopping.is_set():
            await self.faults.wait_if_paused(stopping)
            if stopping.is_set():
                break
            free = options.activity_concurrency - len(self._running) - self._reserved
            if free <= 0 or self._suspects:  # full, or a redelivered item must run alone
                wakeup = self._wakeup
                await wakeup.wait()
                continue
            limit = min(options.batch_size, free)
            session_lock_ms: int | None = None
            claim_new = False
            check: list[SessionRef] = []
            if self._sessions.enabled:
                session_lock_ms = options.session_lock_ms
                remaining = self._sessions.remaining_capacity
                claim_new = remaining > 0
                if claim_new:
                    # Each item could claim one new session: never overshoot the limit.
                    limit = min(limit, remaining)
                else:
                    # At the limit: the fetch re-checks our sessions; each one closed meanwhile
                    # (its purge wakes this fetch) frees the claim of a new one at once.
                    check = self._sessions.owned()
            started = time.monotonic()
            try:
                items = await self._store.fetch_work_items(
                    self._worker_id,
                    limit=limit,
                    lock_ms=options.lock_ms,
                    wait_ms=options.fetch_wait_ms,
                    session_lock_ms=session_lock_ms,
                    claim_new_sessions=claim_new,
                    check_sessions=check,
                    queues=options.queues,
                )
            except NamespaceMissingError:
                raise  # the worker stops: nothing here may re-create a vanished namespace
            except Exception:
                delay = _FETCH_ERROR_BACKOFF_S[min(errors, len(_FETCH_ERROR_BACKOFF_S) - 1)]
                errors += 1
                logger.exception("fetching work items failed; retrying in %.1fs", delay)
                with anyio.move_on_after(delay):
                    await stopping.wait()
                continue
            errors = 0
            lost = getattr(items, "sessions_lost", None)
            if lost:
                self._sessions.forget(lost)
            hand_back: list[WorkItemLease] = []
            starts: list[tuple[_Run, bool]] = []
            for lease in items:
                if stopping.is_set():
                    tg.start_soon(self._abandon, lease, 0, False)
                    continue
                if len(self._running) + self._reserved >= options.activity_concurrency:
                    # A commit's local hand-off filled the slots while this fetch waited:
                    # hand the rest back (not counted) rather than overfill the worker.
                    hand_back.append(lease)
                    continue
                suspect = runs_alone(lease.attempt, options.max_attempts)
                if suspect and self._suspects:
                    # One redelivered item at a time per worker (see _execute_alone): hand the
                    # others back, without counting the delivery, for another worker.
                    hand_back.append(lease)
                    continue
                run = _Run(lease)
                if lease.session_id is not None:
                    # Count the session now, before the next fetch is sized by the remaining
                    # capacity (attaching later, in the task, would let a batch overshoot it).
                    ref = SessionRef(lease.instance_id, lease.session_id)
                    run.verify_session = self._sessions.get(
                        ref
                    ) is None and self._sessions.released_since(ref, started)
                    run.session = self._sessions.attach(ref, run)
                self._running[lease.item_id] = run
                self._idle = anyio.Event() if self._idle.is_set() else self._idle
                if suspect:
                    self._suspects.add(lease.item_id)
                starts.append((run, suspect))
            if hand_back:
                # Before anything of this batch starts: a suspect that kills this worker while
                # a hand-back is still in flight would count a delivery against that item too
                # (its lease expires as this worker's), and innocents fetched beside a poison
                # item would reach max_attempts with it.
                await self._hand_back(hand_back)
            for run, suspect in starts:
                tg.start_soon(self._execute_alone if suspect else self._execute, run)

    # -- renewal -------------------------------------------------------------------------------
    async def renewal_loop(self) -> None:
        interval = self._options.effective_renewal_interval
        idle = self._options.session_idle_timeout
        if idle is not None and idle > 0:
            interval = min(interval, max(idle / 2, 0.05))
        while True:
            await anyio.sleep(interval)
            try:
                await self.renew_once()
            except Exception:
                logger.exception("lease renewal failed; retrying")
            if self.after_renewal is not None:
                self.after_renewal()

    async def renew_once(self) -> None:
        # An item whose ack is in flight is left out: if the ack lands first, a renewal would
        # find the item gone and report a lease lost that was not (the ack reports a real loss).
        runs = [r for r in self._running.values() if r.cancel_reason is None and not r.acking]
        if runs:
            lost = await self._store.renew_work_items(
                [r.lease for r in runs],
                self._options.lock_ms,
                self._options.session_lock_ms if self._sessions.enabled else None,
            )
            for item_id in lost:
                run = self._running.get(item_id)
                if run is not None and not run.acking:
                    logger.info(
                        "activity lease lost; cancelling it",
                        extra={
                            "instance_id": run.lease.instance_id,
                            "activity_key": run.lease.activity_key,
                            "worker_id": self._worker_id,
                        },
                    )
                    run.cancel(CancelCause.ACTIVITY_LEASE_LOST)
        await self._sessions.tick()

    # -- shutdown ------------------------------------------------------------------------------
    async def drain(self, grace_period: float) -> None:
        """Wait up to ``grace_period`` for in-flight work, then hand the rest back."""
        await self._sessions.release_idle()
        with anyio.move_on_after(grace_period):
            await self._idle.wait()
        leftover = list(self._running.values())
        if leftover:
            logger.info("handing back %d unfinished activities", len(leftover))
        for run in leftover:
            run.cancel(CancelCause.SHUTDOWN)
        # Give the cancelled tasks a moment to hand their items back themselves.
        with anyio.move_on_after(max(1.0, min(grace_period, 5.0))):
            await self._idle.wait()
        with anyio.CancelScope(shield=True):
            for run in list(self._running.values()):
                await self._abandon(run.lease, 0, False)
            await self._sessions.release_all()

    # -- one item ------------------------------------------------------------------------------
    async def _execute_alone(self, run: _Run) -> None:
        """Run a twice-redelivered item (see ``runs_alone``) with no other lease held here.

        Its last holders died or lost it, so it may be what killed them. Alone, if it kills this
        worker too it takes no innocent work down with it: a crash counts a delivery against
        every item the worker holds, and innocents fetched in one batch with a poison item would
        otherwise reach ``max_attempts`` with it. While a suspect waits or runs, the fetch loop
        fetches nothing, other suspects are handed back, and the suspect waits for the work
        already in flight here to finish; its lease is renewed meanwhile.
        """
        try:
            while len(self._running) > 1:
                wakeup = self._wakeup
                await wakeup.wait()
            await self._execute(run, then_turn=False)
        finally:
            self._suspects.discard(run.lease.item_id)
            self._wake()
        await self._next_turn(run)  # not alone: the worker fetches again meanwhile

    async def _execute(self, run: _Run, *, then_turn: bool = True) -> None:
        lease = run.lease
        try:
            await self._execute_inner(run)
        except Exception:
            # The activity's own exceptions are its outcome: this one is the worker's (Redis, a
            # broken app or codec), so it does not count toward the item's poison verdict.
            pause = self.faults.worker_fault()
            logger.exception(
                "worker fault running activity %s: not counted against it; handed back, this "
                "worker pauses its fetches for %.1fs",
                lease.activity_key,
                pause,
                extra={"instance_id": lease.instance_id, "activity_key": lease.activity_key},
            )
            await self._abandon(lease, 1000, False)
        finally:
            if run.session is not None:
                self._sessions.detach(run.session, run)
            self._running.pop(lease.item_id, None)
            if not self._running:
                self._idle.set()
            self._wake()
        if then_turn:
            await self._next_turn(run)

    async def _next_turn(self, run: _Run) -> None:
        """Run the turn our ack locked (local hand-off), once the item is done here."""
        if run.next_turn is not None and self.on_turn is not None:
            await self.on_turn(run.next_turn)

    async def _execute_inner(self, run: _Run) -> None:
        lease = run.lease
        if run.verify_session and run.session is not None:
            # A fetch that raced our own release of the session: make sure it is still ours.
            ref = run.session.ref
            if not await self._sessions.verify(ref):
                self._sessions.lose([ref], "released while it was being fetched")
                await self._abandon(lease, 0, False)
                return

        try:
            task = _bridge.decode_task(lease.data)
        except Exception as exc:
            logger.error(
                "undecodable work item %s (%s); attempt %d",
                lease.item_id,
                exc,
                lease.attempt,
                extra={"instance_id": lease.instance_id, "activity_key": lease.activity_key},
            )
            await self._abandon(lease, 5000, True)
            return

        log_extra = {
            "instance_id": lease.instance_id,
            "activity_key": lease.activity_key,
            "activity_name": task.name,
            "worker_id": self._worker_id,
        }
        if lease.attempt > self._options.max_attempts:
            logger.error(
                "activity %s is poison (fetched %d times, max %d); failing it",
                task.name,
                lease.attempt,
                self._options.max_attempts,
                extra=log_extra,
            )
            message_id, data = _bridge.poison_completion(
                task, lease.attempt, self._options.max_attempts, self._codec
            )
            await self._ack(run, message_id, data)
            return

        try:
            activity = _bridge.resolve_activity(self._app, task.name)
        except NotRegisteredError:
            count = self._unregistered.get(task.name, 0) + 1
            self._unregistered[task.name] = count
            delay = self._options.unregistered_delay_ms(count)
            logger.warning(
                "activity %r is not registered on this worker; retrying in %d ms",
                task.name,
                delay,
                extra=log_extra,
            )
            await self._abandon(lease, delay, False)
            return
        self._unregistered.pop(task.name, None)

        ctx = _bridge.make_activity_context(
            task,
            worker_id=self._worker_id,
            delivery=lease.attempt,
            session_id=lease.session_id,
            cancel_event=run.cancel_event,
            stream=_bridge.stream_writer(self._store, task.instance_id, self._codec),
        )
        outcome: tuple[bool, Any] | None = None
        # no deadline scope when there is no timeout (one CancelScope less per activity)
        deadline = anyio.fail_after(task.timeout_ms / 1000) if task.timeout_ms else nullcontext()
        span = tracing.activity_span(task, delivery=lease.attempt, worker_id=self._worker_id)
        with run.scope, span:
            try:
                with deadline:
                    args = _bridge.activity_args(task, activity, self._codec)
                    if activity.is_async:
                        value = await activity.fn(ctx, *args)
                    else:
                        value = await self._call_sync(task, activity, ctx, args)
                outcome = (True, value)
            except TimeoutError as exc:
                outcome = (False, exc)
            except Exception as exc:
                outcome = (False, exc)
            span.outcome(outcome)
        if outcome is None or run.cancel_reason is not None:
            logger.info(
                "activity %s stopped: %s",
                task.name,
                run.cancel_reason or "cancelled",
                extra=log_extra,
            )
            if run.hand_back:
                await self._abandon(lease, 0, False)
            return
        ok, value = outcome
        try:
            if ok:
                message_id, data = _bridge.completed_message(task, value, self._codec)
            else:
                message_id, data = _bridge.failed_message(task, value, self._codec)
        except Exception as exc:  # the result could not be encoded: that is a failure too
            message_id, data = _bridge.failed_message(task, exc, self._codec)
        await self._ack(run, message_id, data)

    async def _call_sync(
        self,
        task: ActivityTask,
        activity: _bridge.ResolvedActivity,
        ctx: ActivityContext,
        args: tuple[Any, ...],
    ) -> Any:
        """A sync activity's call: inline on the event loop (no thread hop) once measured fast
        or when marked ``inline=True``, else in the thread pool (``_speed``)."""
        speed = self._speed.get(task.name)
        if speed is None:
            speed = self._speed[task.name] = Speed(activity.inline)
        if speed.inline and not task.timeout_ms:
            extra = {"instance_id": task.instance_id, "activity_name": task.name}
            ran, value = speed.call_inline(activity.fn, ctx, args, extra)
            if ran:
                return value
        return await speed.call_in_pool(activity.fn, ctx, args, self._threads)

    async def _ack(self, run: _Run, message_id: str, data: bytes) -> None:
        run.acking = True
        handoff = (
            self.on_turn is not None
            and not (self._stopping and self._stopping.is_set())
            and not self.skips(run.lease.instance_id)
        )
        try:
            with anyio.CancelScope(shield=True):
                if handoff:
                    run.next_turn = await self._store.ack_work_item(
                        run.lease, message_id, data, lock_ms=self._options.lock_ms
                    )
                else:
                    await self._store.ack_work_item(run.lease, message_id, data)
            self.faults.succeeded()
        except LeaseLostError:
            logger.info(
                "late completion dropped: the lease of %s was lost (cancelled or closed)",
                run.lease.activity_key,
                extra={"instance_id": run.lease.instance_id, "worker_id": self._worker_id},
            )

    async def _hand_back(self, leases: list[WorkItemLease]) -> None:
        """Give ``leases`` back without counting their delivery; return once all are back."""
        async with anyio.create_task_group() as tg:
            for lease in leases:
                tg.start_soon(self._abandon, lease, 0, False)

    async def _abandon(self, lease: WorkItemLease, delay_ms: int, count_attempt: bool) -> None:
        try:
            with anyio.CancelScope(shield=True):
                await self._store.abandon_work_item(
                    lease, delay_ms=delay_ms, count_attempt=count_attempt
                )
        except LeaseLostError:
            pass
        except Exception:
            logger.exception("abandoning work item %s failed; its lease will expire", lease.item_id)


def runs_alone(attempt: int, max_attempts: int) -> bool:
    """Whether the delivery ``attempt`` of an item must run alone on its worker.

    From the second redelivery on (``attempt >= 3``), and on the last delivery allowed. A first
    redelivery runs like any item: one worker death is usually the worker's (killed, OOM, a
    deploy), and a dead worker's items (its sessions' above all, which no other worker may
    take) must come back in parallel, not one at a time. Innocents stay safe: a poison item
    runs beside other work only on its first two deliveries, so an innocent loses at most two
    deliveries to it and then, redelivered twice itself, runs alone, within any
    ``max_attempts >= 2`` (with 2, the second delivery is the last: alone).
    """
    if attempt <= 1 or attempt > max_attempts:
        return False  # a first delivery; or the poison verdict, which runs nothing
    return attempt >= 3 or attempt == max_attempts
