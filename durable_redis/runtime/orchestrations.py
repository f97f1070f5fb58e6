"""The orchestration dispatcher: lock an instance, replay it with core, commit the turn.

Each of ``orchestration_concurrency`` loops fetches one instance at a time. The turn itself
(``core.run_turn``: replay plus the new steps) runs inline on the worker's event loop when the
history is small (at most ``INLINE_TURN_MAX_EVENTS`` events and messages: a few ms of CPU; core
drives the orchestration on its own deterministic loop and restores the running one), and in a
worker thread otherwise, so a long replay does not block the event loop; meanwhile the lease is
renewed. The thread hop costs more CPU than a small turn itself. A turn that leaves the
orchestration running keeps it suspended (``core.SuspendedOrchestration``, at most 256 per
worker); the instance's next turn on this worker, if the lease's history is exactly the committed
one, feeds it only the new messages instead of replaying (any doubt: full replay). Verdicts of
the runtime itself:

- a lease fetched more than ``max_attempts`` times is poison: the instance fails (kind "poison");
- a history that cannot be decoded fails the instance as poisoned, too;
- an orchestration (name, version) this worker does not have is never failed and never
  counted: the version is the one the instance recorded at its start (an exact match; a start
  that asked for no version takes this worker's latest). The lease is abandoned at once, visible
  to the other workers (one that has the version takes it), and this worker passes over the
  instance in its claims (``fetch_orchestration(skip=)``, at most ``MAX_SKIPPED``) for a back-off
  (``unregistered_backoff`` doubling to ``unregistered_backoff_max``) before it looks again;
  past ``MAX_SKIPPED`` instances it abandons with that back-off as the delay instead;
- a turn whose code no longer matches the history (``NondeterminismError``: a changed
  orchestration was deployed) *holds* the instance by default: abandoned with a capped back-off
  (``held_backoff`` .. ``held_backoff_max``) without counting the attempt, its messages kept,
  the divergence stored as the record's ``held`` marker and logged at ERROR, so rolling the code
  back (or patching it) lets it continue; ``on_nondeterminism="fail"`` (per orchestration or
  per worker), or an operator's ``request_fail_held``, commits the failure instead;
- a turn running longer than ``turn_timeout`` (code that spins or blocks) is interrupted by the
  turn watchdog (``runtime.watchdog``) and the instance held like a nondeterministic one, with a
  ``TurnTimeoutError`` reason; an instance whose messages were delivered ``max_turn_crashes``
  times without a commit or a hand-back (its turn kills the worker: ``os._exit``) is held with a
  ``TurnCrashedWorkerError`` reason without running its code; a held one of either kind that
  an operator asked to fail (``held fail``) fails as poison at its next delivery;
- an exception out of the turn computation (core running the orchestration) is the instance's
  fault: the lease is abandoned with a delay, counting the attempt, so a turn that keeps crashing
  ends as poison instead of looping forever; unless the same crash hits other instances too
  (``runtime.faults``): then, like any exception of the worker's own machinery (Redis, the
  commit), it is the worker's fault, not counted, and this dispatcher backs off.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import anyio

from durable_redis import core
from durable_redis.contract import FailureKind, InstanceStatus, TurnCommit
from durable_redis.core import App, Codec
from durable_redis.errors import (
    DurableRedisError,
    FailureDetails,
    LeaseLostError,
    NamespaceMissingError,
    NotRegisteredError,
    TurnCrashedWorkerError,
    TurnTimeoutError,
)
from durable_redis.runtime import _bridge, tracing
from durable_redis.runtime.faults import FaultTracker
from durable_redis.runtime.options import WorkerOptions
from durable_redis.runtime.watchdog import TurnWatchdog
from durable_redis.storage.base import ClaimedInstance, OrchestrationLease, Store, WorkTake

__all__ = ["OrchestrationDispatcher"]

logger = logging.getLogger(__name__)

_FETCH_ERROR_BACKOFF_S = (0.1, 0.2, 0.5, 1.0, 2.0, 3.0)
_CRASH_DELAY_MS = 1000
# Turns with at most this many history events + messages run inline on the event loop (a replay
# of 2,000 events is ~15 ms of CPU on the benchmark machine); bigger ones run in a thread.
INLINE_TURN_MAX_EVENTS = 2000
# Instances one dispatcher passes over in its claims because it lacks their orchestration
# version (sent with every claim while any is skipped: keep the list short).
MAX_SKIPPED = 64
# held reasons of the watchdog: a held instance with one of these fails at once on `held fail`
_WATCHDOG_HOLDS = (f"{TurnTimeoutError.__name__}:", f"{TurnCrashedWorkerError.__name__}:")


class _NeedsThread(Exception):
    """A turn computed on the event loop reached a local activity that must not block it."""


class _CodeCrash(Exception):
    """The turn computation itself raised (its cause is the exception)."""


class _Held:
    """A lease a turn holds: renewed by the dispatcher's one renewal loop."""

    __slots__ = ("lease", "lost", "renewed")

    def __init__(self, lease: OrchestrationLease, now: float) -> None:
        self.lease = lease
        self.lost = anyio.Event()
        self.renewed = now  # anyio.current_time() of the fetch or the last renewal


def _takeable(commit: TurnCommit) -> int:
    """How many of ``commit``'s new work items ``commit_turn`` could lease to the committing
    worker (plain items of "default", visible now, no priority, no flow key: the ones its Lua
    takes). The slots reserved for the take are sized by it: a commit that reserved a whole
    batch for items it does not have filled the dispatcher's slots while its fetch was out,
    and the fetched items were handed back (1.5 wasted script calls per many_orch
    orchestration before)."""
    return sum(
        1
        for w in commit.work_items
        if w.session_id is None
        and w.queue in (None, "default")
        and w.visible_at_ms is None
        and not w.priority
        and w.flow_key is None
    )


class OrchestrationDispatcher:
    def __init__(
        self, app: App, store: Store, options: WorkerOptions, worker_id: str, codec: Codec
    ) -> None:
        self._app = app
        self._store = store
        self._options = options
        self._worker_id = worker_id
        self._codec = codec
        self._threads = anyio.CapacityLimiter(options.orchestration_concurrency)
        self._unregistered: dict[str, int] = {}
        self._skipped: dict[str, float] = {}  # instance -> anyio time until which claims skip it
        self._holds: dict[str, int] = {}  # instance -> turns held in a row (the back-off)
        self._histories = _bridge.HistoryCache()
        self._suspended = _bridge.SuspendedCache()
        self._local = _bridge.local_runner(app, codec, worker_id)
        # instances whose turns run local activities not marked inline: computed in a thread
        self._threaded: set[str] = set()
        self.faults = FaultTracker()
        self.in_flight = 0
        self.resumed_turns = 0  # turns that advanced a suspended orchestration (no replay)
        # local hand-off (WorkerOptions.local_handoff): the worker's ActivityDispatcher, which
        # runs the work items our commits lease to it; set by the Worker
        self.activities: Any = None
        self._stopping: anyio.Event | None = None
        self._held: dict[str, _Held] = {}  # lease token -> the turn's lease (renewal_loop)
        self.watchdog = (
            TurnWatchdog(options.turn_timeout) if options.turn_timeout is not None else None
        )
        # the fetch loop's own commits claim its next instance in the same call (a store class
        # that offers it; a wrapper overriding only commit_turn keeps its commit path)
        self._claims_on_commit = options.local_handoff and hasattr(
            type(store), "commit_turn_and_claim"
        )
        # each fetch loop's task -> the instance its last commit claimed for it (or None)
        self._next_claims: dict[asyncio.Task[Any], ClaimedInstance | None] = {}

    def _guarded(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` (a turn computation) under the turn watchdog, if any."""
        if self.watchdog is None:
            return fn(*args)
        return self.watchdog.run(fn, *args)

    async def _compute(self, instance_id: str, size: int, fn: Any, *args: Any) -> Any:
        """A turn computation of ``size`` events + messages, ``fn(*args, local_runner)``: inline
        on the event loop if small, else in a worker thread; under the watchdog either way.

        A local activity not marked ``inline=True`` never runs on the event loop: an inline
        turn that reaches one stops there (nothing of it is kept) and the instance's turns run
        in a thread from then on; a full turn (``run_turn``, pure) is computed again there at
        once, an advanced suspended one raises (the caller replays it in full, in the thread).
        """
        if size <= INLINE_TURN_MAX_EVENTS and instance_id not in self._threaded:
            try:
                return self._guarded(fn, *args, self._local_on_loop)
            except _NeedsThread:
                if len(self._threaded) >= 10_000:
                    self._threaded.clear()
                self._threaded.add(instance_id)
                if fn is not _bridge.run_turn:
                    raise
        full = (fn, *args, self._local)
        return await anyio.to_thread.run_sync(self._guarded, *full, limiter=self._threads)

    def _local_on_loop(self, tasks: Sequence[core.ActivityTask]) -> Sequence[core.Message]:
        """The local runner of a turn computed on the event loop: only inline activities."""
        if not all(_bridge.runs_inline(self._app, task) for task in tasks):
            raise _NeedsThread
        return self._local(tasks)

    def close(self) -> None:
        if self.watchdog is not None:
            self.watchdog.close()

    async def run_adopted(self, lease: OrchestrationLease) -> None:
        """Run the turn of an instance this worker's activity ack locked (local hand-off)."""
        with anyio.CancelScope(shield=True):
            if self._stopping is None or self._stopping.is_set():
                await self._abandon(lease, 0, count_attempt=False)
                return
            self.in_flight += 1
            try:
                await self.process(lease)
            finally:
                self.in_flight -= 1

    async def fetch_loop(self, stopping: anyio.Event) -> None:
        self._stopping = stopping
        try:
            await self._fetch_loop(stopping)
        finally:
            if stopping.is_set():
                self._suspended.clear()
                self.close()

    async def _fetch_loop(self, stopping: anyio.Event) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._next_claims[task] = None
        try:
            await self._fetch_turns(stopping, task)
        finally:
            claimed = self._next_claims.pop(task, None)
            if claimed is not None:  # stopping: the claim of the last commit goes back
                with anyio.CancelScope(shield=True):
                    await self._hand_back_claim(claimed)

    async def _fetch_turns(self, stopping: anyio.Event, task: asyncio.Task[Any]) -> None:
        errors = 0
        options = self._options
        while not stopping.is_set():
            claimed, self._next_claims[task] = self._next_claims[task], None
            if claimed is not None and self.faults.pause_remaining() > 0:
                await self._hand_back_claim(claimed)  # paused: it goes back (not counted)
                claimed = None
            if claimed is None:
                await self.faults.wait_if_paused(stopping)
                if stopping.is_set():
                    break
            try:
                skip = self._skip_list()
                if claimed is not None:  # our last commit claimed it: phase 2 of the fetch
                    lease = await self._store.lock_claimed(  # type: ignore[attr-defined]
                        claimed, options.lock_ms
                    )
                    if lease is None:
                        continue  # nothing to run on it any more (released): fetch as usual
                elif skip:
                    lease = await self._store.fetch_orchestration(
                        lock_ms=options.lock_ms, wait_ms=options.fetch_wait_ms, skip=skip
                    )
                else:  # the common path: the plain call
                    lease = await self._store.fetch_orchestration(
                        lock_ms=options.lock_ms, wait_ms=options.fetch_wait_ms
                    )
            except NamespaceMissingError:
                raise  # the worker stops: nothing here may re-create a vanished namespace
            except Exception:
                delay = _FETCH_ERROR_BACKOFF_S[min(errors, len(_FETCH_ERROR_BACKOFF_S) - 1)]
                errors += 1
                logger.exception("fetching an orchestration failed; retrying in %.1fs", delay)
                with anyio.move_on_after(delay):
                    await stopping.wait()
                continue
            errors = 0
            if lease is None:
                continue
            if stopping.is_set():
                await self._abandon(lease, 0, count_attempt=False)
                break
            self.in_flight += 1
            try:
                with anyio.CancelScope(shield=True):  # a started turn finishes or is abandoned
                    await self.process(lease)
            finally:
                self.in_flight -= 1

    async def _hand_back_claim(self, claimed: ClaimedInstance) -> None:
        """Release an instance our commit claimed that this worker will not run now (its
        lock, through a lease with no attempt counted), so nobody waits out its lock."""
        try:
            lease = await self._store.lock_claimed(  # type: ignore[attr-defined]
                claimed, self._options.lock_ms
            )
        except Exception:
            logger.warning(
                "handing back claimed %s failed; its lock will expire",
                claimed.instance_id,
                exc_info=True,
            )
            return
        if lease is not None:
            await self._abandon(lease, 0, count_attempt=False)

    def skips(self, instance_id: str) -> bool:
        """Whether this worker passes over ``instance_id`` now (it lacks its version)."""
        until = self._skipped.get(instance_id)
        return until is not None and until > anyio.current_time()

    def _skip_list(self) -> list[str]:
        """The instances claims pass over now (their back-off not over yet)."""
        if not self._skipped:
            return []
        now = anyio.current_time()
        for iid in [i for i, until in self._skipped.items() if until <= now]:
            del self._skipped[iid]
        return list(self._skipped)

    async def process(self, lease: OrchestrationLease) -> None:
        """Run one turn of ``lease`` and commit it (or abandon it); ``renewal_loop`` renews it
        meanwhile."""
        held = _Held(lease, anyio.current_time())
        self._held[lease.token] = held
        try:
            with tracing.turn_span(lease.instance_id, self._worker_id, lease.attempt):
                await self._turn(lease, held.lost)
        except _CodeCrash as crash:
            exc = crash.__cause__ or crash
            if self.faults.code_crashed(lease.instance_id, exc):
                logger.error(
                    "orchestration turn of %s crashed (delivery %d of max %d, counted); "
                    "retrying in %d ms",
                    lease.instance_id,
                    lease.attempt,
                    self._options.max_attempts,
                    _CRASH_DELAY_MS,
                    exc_info=exc,
                    extra={"instance_id": lease.instance_id, "worker_id": self._worker_id},
                )
                await self._abandon(lease, _CRASH_DELAY_MS, count_attempt=True)
            else:
                await self._worker_fault(lease, exc, "the same crash hit other instances")
        except Exception as exc:
            await self._worker_fault(lease, exc, "outside the orchestration's code")
        finally:
            del self._held[lease.token]

    async def _worker_fault(self, lease: OrchestrationLease, exc: BaseException, why: str) -> None:
        pause = self.faults.worker_fault()
        logger.error(
            "worker fault in the turn of %s (%s): not counted against it; handed back, "
            "this worker pauses its turns for %.1fs",
            lease.instance_id,
            why,
            pause,
            exc_info=exc,
            extra={"instance_id": lease.instance_id, "worker_id": self._worker_id},
        )
        await self._abandon(lease, _CRASH_DELAY_MS, count_attempt=False)

    async def renewal_loop(self) -> None:
        """One loop renews every lease a turn of this worker holds (most turns take a few ms
        and are never renewed): each at most ``renewal_interval`` after its fetch or its last
        renewal. A lease found lost sets its turn's ``lost`` event (the turn is not committed).
        """
        interval = self._options.effective_renewal_interval
        while True:
            await anyio.sleep(interval / 2)
            now = anyio.current_time()
            for token, held in list(self._held.items()):
                if now - held.renewed < interval / 2 or held.lost.is_set():
                    continue
                try:
                    await self._store.renew_orchestration(held.lease, self._options.lock_ms)
                    held.renewed = now
                except LeaseLostError:
                    if token in self._held:  # else the turn ended (committed) meanwhile
                        logger.warning(
                            "orchestration lease lost during a turn",
                            extra={
                                "instance_id": held.lease.instance_id,
                                "worker_id": self._worker_id,
                            },
                        )
                    held.lost.set()
                except Exception:
                    if token in self._held:
                        logger.exception("renewing an orchestration lease failed; retrying")

    async def _turn(self, lease: OrchestrationLease, lost: anyio.Event) -> None:
        now_ms = lease.fetched_at_ms

        suspended = self._suspended.take(lease)
        if self._watchdog_verdict_due(lease):
            if suspended is not None:
                suspended.close()
            await self._replayed_turn(lease, lost, now_ms, quarantine=True)
            return
        if suspended is not None and lease.attempt <= self._options.max_attempts:
            try:
                messages = _bridge.decode_messages(lease.messages)
            except Exception:
                messages = None  # the full path below reports it
            if messages is not None:
                await self._resume(lease, lost, suspended, messages, now_ms)
                return
        if suspended is not None:
            suspended.close()
        await self._replayed_turn(lease, lost, now_ms)

    def _watchdog_verdict_due(self, lease: OrchestrationLease) -> bool:
        """Whether this delivery must not run the code: the turn killed its worker
        ``max_turn_crashes`` times, or a watchdog hold that an operator asked to fail."""
        limit = self._options.max_turn_crashes
        if limit and lease.crashes >= limit:
            return True
        info = lease.instance
        return bool(
            info is not None
            and info.fail_requested
            and info.held is not None
            and info.held.startswith(_WATCHDOG_HOLDS)
        )

    async def _replayed_turn(
        self, lease: OrchestrationLease, lost: anyio.Event, now_ms: int, *, quarantine: bool = False
    ) -> None:
        """The turn from the stored history: its verdicts (corrupted, poison, the watchdog's),
        then the replay."""
        instance_id = lease.instance_id
        extra = {"instance_id": instance_id, "worker_id": self._worker_id}
        try:
            history = self._histories.decode(instance_id, lease.history)
        except Exception as exc:
            logger.error(
                "history of %s cannot be decoded: %s; failing it", instance_id, exc, extra=extra
            )
            details = FailureDetails(
                kind=FailureKind.POISON,
                type_name="CorruptedHistoryError",
                message=f"the history of {instance_id!r} cannot be decoded: {exc}",
            )
            await self._fail(lease, details, now_ms, corrupted=True)
            return

        if quarantine:
            limit = self._options.max_turn_crashes
            if limit and lease.crashes >= limit:
                error: DurableRedisError = TurnCrashedWorkerError(
                    f"the turn of {instance_id!r} ended {lease.crashes} times without a commit "
                    f"or a hand-back (max_turn_crashes={limit}): its code kills the worker "
                    "(os._exit, a crash); not run again"
                )
            else:
                held = (lease.instance.held if lease.instance is not None else None) or ""
                error = TurnTimeoutError(held.split(": ", 1)[-1])
            await self._quarantine(lease, error, now_ms, history)
            return

        if lease.attempt > self._options.max_attempts:
            logger.error(
                "orchestration %s is poison (fetched %d times, max %d); failing it",
                instance_id,
                lease.attempt,
                self._options.max_attempts,
                extra=extra,
            )
            details = FailureDetails(
                kind=FailureKind.POISON,
                type_name="PoisonMessageError",
                message=(
                    f"orchestration {instance_id!r} crashed or timed out {lease.attempt - 1} "
                    f"times (max_attempts={self._options.max_attempts})"
                ),
            )
            await self._fail(lease, details, now_ms, history=history)
            return

        try:
            messages = _bridge.decode_messages(lease.messages)
        except Exception as exc:
            logger.error(
                "a message for %s cannot be decoded: %s; failing it", instance_id, exc, extra=extra
            )
            details = FailureDetails(
                kind=FailureKind.POISON,
                type_name="CorruptedMessageError",
                message=f"a message for {instance_id!r} cannot be decoded: {exc}",
            )
            await self._fail(lease, details, now_ms, history=history)
            return

        if lease.execution_id == 0 and not history and not _bridge.has_start(messages):
            # Not started, and its start message is not visible yet (start_at, or the back-off
            # of a name no worker knew): keep the messages (a cancel, an event) for that turn.
            try:
                if await self._store.abandon_orchestration(
                    lease, count_attempt=False, until_start=True
                ):
                    return
            except LeaseLostError:
                return
        await self._full_turn(lease, lost, history, messages, now_ms)

    async def _resume(
        self,
        lease: OrchestrationLease,
        lost: anyio.Event,
        suspended: core.SuspendedOrchestration,
        messages: list[core.Message],
        now_ms: int,
    ) -> None:
        """Advance the suspended orchestration by ``messages``; replay in full if that fails."""
        try:
            result, after = await self._compute(
                lease.instance_id, len(messages), _bridge.advance, suspended, messages, now_ms
            )
        except TurnTimeoutError as exc:
            _close_quietly(suspended)
            history = self._histories.decode(lease.instance_id, lease.history)
            await self._quarantine(lease, exc, now_ms, history)
            return
        except Exception:
            logger.debug(
                "resuming %s failed; replaying it in full",
                lease.instance_id,
                exc_info=True,
                extra={"instance_id": lease.instance_id, "worker_id": self._worker_id},
            )
            suspended.close()
            await self._replayed_turn(lease, lost, now_ms)
            return
        self.resumed_turns += 1
        await self._finish(lease, lost, result, after)

    async def _full_turn(
        self,
        lease: OrchestrationLease,
        lost: anyio.Event,
        history: list[core.HistoryEvent],
        messages: list[core.Message],
        now_ms: int,
    ) -> None:
        instance_id = lease.instance_id
        extra = {"instance_id": instance_id, "worker_id": self._worker_id}
        try:
            result, after = await self._compute(
                instance_id,
                len(history) + len(messages),
                _bridge.run_turn,
                self._app,
                instance_id,
                history,
                messages,
                now_ms,
                self._codec,
            )
        except TurnTimeoutError as exc:
            await self._quarantine(lease, exc, now_ms, history)
            return
        except NotRegisteredError as exc:
            key = instance_id
            count = self._unregistered.get(key, 0) + 1
            self._unregistered[key] = count
            if len(self._unregistered) > 10_000:
                self._unregistered.clear()
            delay = self._options.unregistered_delay_ms(count)
            if instance_id in self._skipped or len(self._skipped) < MAX_SKIPPED:
                # left to the workers that have it; this one looks again after the back-off
                self._skipped[instance_id] = anyio.current_time() + delay / 1000
                logger.warning(
                    "%s; left to other workers, this one passes over %s for %d ms",
                    exc,
                    instance_id,
                    delay,
                    extra=extra,
                )
                await self._abandon(lease, 0, count_attempt=False)
                return
            logger.warning("%s; retrying %s in %d ms", exc, instance_id, delay, extra=extra)
            await self._abandon(lease, delay, count_attempt=False)
            return
        except Exception as exc:
            raise _CodeCrash() from exc
        self._unregistered.pop(instance_id, None)
        if result.nondeterminism is not None and await self._hold(lease, history, result, after):
            return
        self._holds.pop(instance_id, None)
        await self._finish(lease, lost, result, after)

    def _hold_policy(self, history: list[core.HistoryEvent]) -> str:
        started = history[0] if history else None
        policy = None
        if isinstance(started, core.events.OrchestrationStarted):
            try:
                definition = self._app.get_orchestration(started.name, started.version, exact=True)
                policy = definition.on_nondeterminism
            except NotRegisteredError:
                pass
        return policy or self._options.on_nondeterminism

    async def _hold(
        self,
        lease: OrchestrationLease,
        history: list[core.HistoryEvent],
        result: core.TurnResult,
        after: core.SuspendedOrchestration | None,
    ) -> bool:
        """Hold an instance whose turn diverged from its history; False: fail it instead
        (its policy is "fail", or an operator asked to fail it)."""
        instance_id = lease.instance_id
        extra = {"instance_id": instance_id, "worker_id": self._worker_id}
        divergence = str(result.nondeterminism)
        if after is not None:
            after.close()
        if self._hold_policy(history) == "fail":
            return False
        try:
            info = await self._store.get_instance(instance_id)
        except Exception:
            info = None  # cannot tell: hold (failing would be the irreversible choice)
        if info is not None and info.fail_requested:
            logger.error(
                "orchestration %s was held (%s); failing it as an operator asked",
                instance_id,
                divergence,
                extra=extra,
            )
            self._holds.pop(instance_id, None)
            return False
        self._suspended.discard(instance_id)
        await self._abandon_held(
            lease,
            divergence,
            "its messages are kept and the turn is retried in %d ms (deploy compatible code; "
            "`durable-redis held fail %s` fails it)",
        )
        return True

    async def _quarantine(
        self,
        lease: OrchestrationLease,
        error: DurableRedisError,
        now_ms: int,
        history: list[Any],
    ) -> None:
        """The watchdog's verdict: hold the instance with ``error`` as the reason (its messages
        kept, retried with the held back-off, visible in ``status`` / ``held list``), or fail it
        as poison when an operator asked (``held fail``)."""
        instance_id = lease.instance_id
        extra = {"instance_id": instance_id, "worker_id": self._worker_id}
        reason = f"{type(error).__name__}: {error}"
        self._suspended.discard(instance_id)
        info = lease.instance
        if info is not None and info.fail_requested:
            logger.error(
                "%s was held (%s); failing it as an operator asked",
                instance_id,
                reason,
                extra=extra,
            )
            self._holds.pop(instance_id, None)
            details = FailureDetails(
                kind="poison", type_name=type(error).__name__, message=str(error)
            )
            await self._fail(lease, details, now_ms, history=history)
            return
        await self._abandon_held(
            lease, reason, "retried in %d ms (`durable-redis held fail %s` fails it)"
        )

    async def _abandon_held(self, lease: OrchestrationLease, reason: str, then: str) -> None:
        """Hand a held instance back with ``reason`` as its held marker and the held back-off
        (not counted as an attempt); ``then`` the log's tail (delay ms, instance id)."""
        instance_id = lease.instance_id
        extra = {"instance_id": instance_id, "worker_id": self._worker_id}
        count = self._holds.get(instance_id, 0) + 1
        self._holds[instance_id] = count
        if len(self._holds) > 10_000:
            self._holds.clear()
        delay = self._options.held_delay_ms(count)
        logger.error(
            "orchestration %s is held: %s; " + then,
            instance_id,
            reason,
            delay,
            instance_id,
            extra=extra,
        )
        try:
            await self._store.abandon_orchestration(
                lease, delay_ms=delay, count_attempt=False, held=reason
            )
        except LeaseLostError:
            pass
        except Exception:
            logger.exception("holding %s failed; its lease will expire", instance_id, extra=extra)

    async def _finish(
        self,
        lease: OrchestrationLease,
        lost: anyio.Event,
        result: core.TurnResult,
        after: core.SuspendedOrchestration | None,
    ) -> None:
        """Commit the turn; keep the suspended orchestration only once the commit is stored."""
        kept = False
        try:
            if lost.is_set():
                return
            commit = _bridge.to_commit(result)
            if not await self._commit(lease, commit):
                return
            self.faults.succeeded()
            if commit.status is InstanceStatus.FAILED:
                self._log_failed(lease.instance_id, result.failure)
            if after is not None and not lost.is_set():
                self._suspended.put(lease, commit, after)
                kept = True
        finally:
            if after is not None and not kept:
                after.close()

    def _log_failed(self, instance_id: str, failure: FailureDetails | None) -> None:
        """One ERROR line when an instance's own code fails it (type and message; the
        traceback is in its status)."""
        logger.error(
            "orchestration %s failed: %s",
            instance_id,
            failure if failure is not None else "no details recorded",
            extra={"instance_id": instance_id, "worker_id": self._worker_id},
        )

    async def _fail(
        self,
        lease: OrchestrationLease,
        details: FailureDetails,
        now_ms: int,
        *,
        history: Sequence[core.HistoryEvent] = (),
        corrupted: bool = False,
    ) -> None:
        commit = _bridge.fail_instance(lease, history, details, now_ms, corrupted=corrupted)
        await self._commit(lease, commit)

    async def _commit(self, lease: OrchestrationLease, commit: TurnCommit) -> bool:
        """Commit; False if the lease was lost (nothing stored)."""
        activities = self.activities
        # a commit's new work items are taken inline only by a worker serving "default" (items
        # of other queues never are: commit_turn leaves them to the workers serving them)
        serves_default = "default" in self._options.queues
        takeable = _takeable(commit) if activities is not None and serves_default else 0
        limit = activities.reserve_take(takeable) if activities is not None and takeable else 0
        take = WorkTake(self._worker_id, limit, self._options.lock_ms) if limit > 0 else None
        # a turn of the fetch loop claims the loop's next instance in its commit (one script
        # call less per fetched turn); not while claims pass over skipped instances
        task = asyncio.current_task() if self._claims_on_commit else None
        claim = (
            task is not None
            and self._next_claims.get(task, 1) is None  # a fetch loop's, holding no claim
            and not self._skipped
            and self._stopping is not None
            and not self._stopping.is_set()
        )
        taken: list[Any] = []
        try:
            try:
                if claim:
                    assert task is not None
                    taken, self._next_claims[task] = await self._store.commit_turn_and_claim(  # type: ignore[attr-defined]
                        lease, commit, lock_ms=self._options.lock_ms, take=take
                    )
                elif take is not None:
                    taken = await self._store.commit_turn(lease, commit, take=take) or []
                else:
                    await self._store.commit_turn(lease, commit)
            finally:
                if limit > 0:
                    activities.adopt(taken, limit)
        except LeaseLostError:
            logger.warning(
                "turn of %s not committed: its lease was lost (another worker will redo it)",
                lease.instance_id,
                extra={"instance_id": lease.instance_id, "worker_id": self._worker_id},
            )
            return False
        return True

    async def _abandon(
        self, lease: OrchestrationLease, delay_ms: int, *, count_attempt: bool
    ) -> None:
        try:
            await self._store.abandon_orchestration(
                lease, delay_ms=delay_ms, count_attempt=count_attempt
            )
        except LeaseLostError:
            pass
        except Exception:
            logger.exception("abandoning %s failed; its lease will expire", lease.instance_id)


def _close_quietly(suspended: Any) -> None:
    try:
        suspended.close()
    except Exception:
        logger.debug("closing an interrupted orchestration failed", exc_info=True)
