"""The job dispatcher: runs jobs (activities enqueued with ``client.enqueue``) in the worker.

The hot path is lean, because a job is usually small:

- one ``fetch_jobs`` call leases up to ``job_batch_size`` jobs (bounded by free slots of
  ``job_concurrency``);
- a sync activity measured fast runs inline on the event loop, with no thread hop and no task
  (``_speed``: the same rule as orchestration activities; ``inline=False`` never does); sync
  activities with a timeout always run in the pool (an inline call cannot be interrupted);
- async activities get one asyncio task each (no task group per job);
- finished jobs are acked in batches: one ``ack_jobs`` call takes every outcome that finished
  while the previous call was in flight.

Same rules as activities: fenced leases renewed every ``effective_renewal_interval`` (a lost
lease cancels the run: the job was cancelled, its lock stolen), a job delivered more than
``max_attempts`` times is poison and fails, an unregistered name is handed back with back-off
(never failed for it), and retries wait on durable timers (the job's retry policy).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc

from durable_redis import core
from durable_redis.core import App, Codec
from durable_redis.core.jobs import JobTask, decode_job_task
from durable_redis.errors import FailureDetails, NamespaceMissingError, NotRegisteredError
from durable_redis.runtime import _bridge
from durable_redis.runtime._speed import Speed
from durable_redis.runtime.cancel import CancelCause
from durable_redis.runtime.options import WorkerOptions
from durable_redis.storage.job_types import JobAck, JobLease, JobOutcome, JobStore

__all__ = ["JobDispatcher"]

logger = logging.getLogger(__name__)

_FETCH_ERROR_BACKOFF_S = (0.1, 0.2, 0.5, 1.0, 2.0, 3.0)
_PROGRESS_FLUSH_S = 0.05
_ACK_RETRIES = 5


class _Run:
    __slots__ = ("cancel_event", "cancel_reason", "hand_back", "lease", "progress", "scope")

    def __init__(self, lease: JobLease) -> None:
        self.lease = lease
        self.scope: anyio.CancelScope | None = None
        self.cancel_event = threading.Event()
        self.cancel_reason: str | None = None
        self.hand_back = False
        self.progress: bytes | None = None  # encoded, not yet stored

    def cancel(self, cause: CancelCause, detail: str = "") -> None:
        if self.cancel_reason is None:
            self.cancel_reason = cause.text(detail)
            self.hand_back = cause.hands_back
        self.cancel_event.set()
        if self.scope is not None:
            self.scope.cancel()


class JobDispatcher:
    def __init__(
        self, app: App, store: JobStore, options: WorkerOptions, worker_id: str, codec: Codec
    ) -> None:
        self._app = app
        self._store = store
        self._options = options
        self._worker_id = worker_id
        self._codec = codec
        self._running: dict[str, _Run] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._acks: list[JobAck] = []
        self._ack_wake = asyncio.Event()
        self._acks_idle = asyncio.Event()
        self._acks_idle.set()
        self._progress_wake = asyncio.Event()
        self._slot_wake = asyncio.Event()
        self._threads = anyio.CapacityLimiter(options.activity_threads)
        self._speed: dict[str, Speed] = {}
        self._suspect: str | None = None  # the redelivered job waiting to run, or running, alone
        self._unregistered: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.completed = 0  # outcomes acked (introspection)

    @property
    def in_flight(self) -> int:
        return len(self._running)

    @property
    def enabled(self) -> bool:
        return self._options.job_concurrency > 0 and hasattr(self._store, "fetch_jobs")

    # -- fetch loop ----------------------------------------------------------------------------
    async def fetch_loop(self, stopping: anyio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        options = self._options
        errors = 0
        # The last fetch leased some but fewer than it asked for: the ready queue was empty
        # then, and any job since re-armed the marker, so the next fetch waits on it first
        # (on an idle worker this saves the empty fetch after every job).
        drained = False
        while not stopping.is_set():
            free = options.job_concurrency - len(self._running)
            if free <= 0 or self._suspect is not None:  # full, or a suspect must run alone
                self._slot_wake.clear()
                await self._slot_wake.wait()
                continue
            try:
                leases = await self._store.fetch_jobs(
                    self._worker_id,
                    limit=min(options.job_batch_size, free),
                    lock_ms=options.lock_ms,
                    wait_ms=options.fetch_wait_ms,
                    queues=options.queues,
                    skip_first_try=drained,
                )
            except NamespaceMissingError:
                raise
            except Exception:
                delay = _FETCH_ERROR_BACKOFF_S[min(errors, len(_FETCH_ERROR_BACKOFF_S) - 1)]
                errors += 1
                logger.exception("fetching jobs failed; retrying in %.1fs", delay)
                with anyio.move_on_after(delay):
                    await stopping.wait()
                continue
            errors = 0
            drained = 0 < len(leases) < min(options.job_batch_size, free)
            hand_back: list[JobAck] = []
            suspect: JobLease | None = None
            plain: list[JobLease] = []
            for lease in leases:
                if stopping.is_set():
                    hand_back.append(JobAck(lease, JobOutcome.HAND_BACK, b"0"))
                elif 1 < lease.delivery <= options.max_attempts:
                    if suspect is None:
                        suspect = lease
                    else:  # one redelivered job at a time: the others go to another worker
                        hand_back.append(JobAck(lease, JobOutcome.HAND_BACK, b"0"))
                else:
                    plain.append(lease)
            if hand_back:
                # before anything of the batch starts: a suspect that kills this worker while
                # these are still leased here would count a delivery against them too
                with anyio.CancelScope(shield=True):
                    await self._hand_back(hand_back)
            for lease in plain:
                self._start(lease)
            if suspect is not None:
                self._suspect = suspect.job_id
                self._spawn(self._run_suspect(suspect))
            if self._acks:
                await asyncio.sleep(0)  # the ack flusher sends before the next fetch does

    async def _hand_back(self, acks: list[JobAck]) -> None:
        try:
            await self._store.ack_jobs(acks)
        except NamespaceMissingError:
            raise
        except Exception:
            logger.exception("handing back %d jobs failed; their leases will expire", len(acks))

    async def _run_suspect(self, lease: JobLease) -> None:
        """A redelivered job (its last holder died or lost it) runs with nothing else in flight
        here: if it kills this worker too, it takes no innocent job's delivery with it (the
        rule of the activity dispatcher, ``_execute_alone``)."""
        try:
            while self._running:
                self._slot_wake.clear()
                await self._slot_wake.wait()
            self._start(lease)
            while lease.job_id in self._running:
                self._slot_wake.clear()
                await self._slot_wake.wait()
        finally:
            self._suspect = None
            self._slot_wake.set()

    # -- one job -------------------------------------------------------------------------------
    def _start(self, lease: JobLease) -> None:
        try:
            task = decode_job_task(lease.spec)
        except Exception as exc:
            logger.error("undecodable job %s (%s); handing it back", lease.job_id, exc)
            self._push(JobAck(lease, JobOutcome.HAND_BACK, b"1", 5000))
            return
        if lease.delivery > self._options.max_attempts:
            logger.error(
                "job %s (%s) is poison (fetched %d times, max %d); failing it",
                lease.job_id,
                lease.name,
                lease.delivery,
                self._options.max_attempts,
                extra={"job_id": lease.job_id},
            )
            details = FailureDetails(
                kind="poison",
                type_name="PoisonMessageError",
                message=(
                    f"job {lease.job_id!r} ({lease.name}) was started {lease.delivery} times "
                    f"without completing (max_attempts={self._options.max_attempts}); the worker "
                    "running it probably crashed each time"
                ),
            )
            self._push(JobAck(lease, JobOutcome.FAILED, core.encode_failure(details)))
            return
        try:
            activity = _bridge.resolve_activity(self._app, lease.name)
        except NotRegisteredError:
            count = self._unregistered.get(lease.name, 0) + 1
            self._unregistered[lease.name] = count
            delay = self._options.unregistered_delay_ms(count)
            logger.warning(
                "job activity %r is not registered on this worker; retrying in %d ms",
                lease.name,
                delay,
                extra={"job_id": lease.job_id},
            )
            self._push(JobAck(lease, JobOutcome.HAND_BACK, b"0", delay))
            return
        run = _Run(lease)
        self._running[lease.job_id] = run
        ctx = core.ActivityContext(
            instance_id=lease.job_id,
            execution_id=0,
            activity_id=0,
            name=lease.name,
            attempt=lease.attempt,
            delivery=lease.delivery,
            worker_id=self._worker_id,
            cancel_event=run.cancel_event,
            job_id=lease.job_id,
            progress=lambda value: self._report_progress(run, value),
        )
        if activity.is_async:
            self._spawn(self._run_async(run, task, activity, ctx))
            return
        speed = self._speed.get(lease.name)
        if speed is None:
            speed = self._speed[lease.name] = Speed(activity.inline)
        if speed.inline and task.timeout_ms is None:
            extra = {"job_id": lease.job_id, "activity_name": lease.name}
            try:
                args = _bridge.activity_args(task, activity, self._codec)
                ran, value = speed.call_inline(activity.fn, ctx, args, extra)
            except Exception as exc:
                self._finish(run, task, False, exc)
                return
            if ran:
                self._finish(run, task, True, value)
                return
        self._spawn(self._run_thread(run, task, activity, ctx, speed))

    def _spawn(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _run_async(self, run: _Run, task: JobTask, activity: Any, ctx: Any) -> None:
        async def call() -> Any:
            return await activity.fn(ctx, *_bridge.activity_args(task, activity, self._codec))

        await self._guarded(run, task, call)

    async def _run_thread(
        self, run: _Run, task: JobTask, activity: Any, ctx: Any, speed: Speed
    ) -> None:
        async def call() -> Any:
            args = _bridge.activity_args(task, activity, self._codec)
            return await speed.call_in_pool(activity.fn, ctx, args, self._threads)

        await self._guarded(run, task, call)

    async def _guarded(self, run: _Run, task: JobTask, call: Callable[[], Awaitable[Any]]) -> None:
        """Run ``call`` in the run's cancel scope, bounded by the job's timeout; settle it."""
        outcome: tuple[bool, Any] | None = None
        run.scope = anyio.CancelScope()
        if run.cancel_reason is not None:
            run.scope.cancel()
        with run.scope:
            try:
                with anyio.fail_after(_timeout_s(task)):
                    outcome = (True, await call())
            except Exception as exc:
                outcome = (False, exc)
        self._settle(run, task, outcome)

    def _settle(self, run: _Run, task: JobTask, outcome: tuple[bool, Any] | None) -> None:
        if outcome is None or run.cancel_reason is not None:
            logger.info(
                "job %s stopped: %s",
                run.lease.job_id,
                run.cancel_reason or "cancelled",
                extra={"job_id": run.lease.job_id},
            )
            self._running.pop(run.lease.job_id, None)
            self._slot_wake.set()
            if run.hand_back:
                self._push(JobAck(run.lease, JobOutcome.HAND_BACK, b"0"))
            return
        self._finish(run, task, *outcome)

    def _finish(self, run: _Run, task: JobTask, ok: bool, value: Any) -> None:
        lease = run.lease
        self._running.pop(lease.job_id, None)
        self._slot_wake.set()
        if ok:
            try:
                self._push(JobAck(lease, JobOutcome.COMPLETED, self._codec.encode(value)))
                return
            except Exception as exc:  # the result could not be encoded: a failure too
                ok, value = False, exc
        if isinstance(value, TimeoutError):
            details = FailureDetails(
                kind="timeout",
                type_name="ActivityTimeoutError",
                message=f"job attempt ran past its timeout of {_timeout_s(task)}s",
            )
        else:
            details = core.failure_from_exception(value)
        payload = core.encode_failure(details)
        policy = task.retry_policy
        if lease.attempt < task.max_attempts and policy.is_retryable(details):
            delay = policy.delay_ms(lease.attempt)
            self._push(JobAck(lease, JobOutcome.RETRY, payload, delay))
        else:
            self._push(JobAck(lease, JobOutcome.FAILED, payload))

    def _report_progress(self, run: _Run, value: Any) -> None:
        run.progress = self._codec.encode(value)
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._progress_wake.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed
                loop.call_soon_threadsafe(self._progress_wake.set)

    # -- acks ----------------------------------------------------------------------------------
    def _push(self, ack: JobAck) -> None:
        self._acks.append(ack)
        self._acks_idle.clear()
        self._ack_wake.set()

    async def ack_loop(self) -> None:
        while True:
            await self._ack_wake.wait()
            self._ack_wake.clear()
            await self._flush_acks()

    async def _flush_acks(self) -> None:
        while self._acks:
            batch, self._acks = self._acks, []
            for attempt in range(_ACK_RETRIES):
                try:
                    with anyio.CancelScope(shield=True):
                        results = await self._store.ack_jobs(batch)
                    break
                except NamespaceMissingError:
                    raise
                except Exception:
                    logger.exception("acking %d jobs failed (attempt %d)", len(batch), attempt + 1)
                    await anyio.sleep(0.1 * 2**attempt)
            else:
                logger.error("dropping %d job outcomes; their leases will expire", len(batch))
                continue
            for ack, ok in zip(batch, results, strict=True):
                if not ok and ack.outcome is not JobOutcome.HAND_BACK:
                    logger.info(
                        "late job completion dropped: the lease of %s was lost (cancelled?)",
                        ack.lease.job_id,
                        extra={"job_id": ack.lease.job_id, "worker_id": self._worker_id},
                    )
            self.completed += len(batch)
        self._acks_idle.set()

    # -- renewal and progress ------------------------------------------------------------------
    async def renewal_loop(self) -> None:
        interval = self._options.effective_renewal_interval
        while True:
            with anyio.move_on_after(interval):
                await self._progress_wake.wait()
                await anyio.sleep(_PROGRESS_FLUSH_S)  # coalesce progress reports
            self._progress_wake.clear()
            try:
                await self.renew_once()
            except NamespaceMissingError:
                raise
            except Exception:
                logger.exception("job lease renewal failed; retrying")

    async def renew_once(self) -> None:
        runs = [r for r in self._running.values() if r.cancel_reason is None]
        if not runs:
            return
        progress = []
        for r in runs:
            progress.append(r.progress)
            r.progress = None
        leases = [r.lease for r in runs]
        lost = await self._store.renew_jobs(leases, self._options.lock_ms, progress)
        for job_id in lost:
            run = self._running.get(job_id)
            if run is not None:
                logger.info(
                    "job lease lost (cancelled, or expired): %s; cancelling it",
                    job_id,
                    extra={"job_id": job_id, "worker_id": self._worker_id},
                )
                run.cancel(CancelCause.JOB_LEASE_LOST)

    # -- shutdown ------------------------------------------------------------------------------
    async def drain(self, grace_period: float) -> None:
        """Wait up to ``grace_period`` for running jobs, hand the rest back, flush the acks."""
        with anyio.move_on_after(grace_period):
            while self._running:
                self._slot_wake.clear()
                await self._slot_wake.wait()
        for run in list(self._running.values()):
            run.cancel(CancelCause.SHUTDOWN)
        with anyio.move_on_after(max(1.0, min(grace_period, 5.0))):
            while self._running:
                self._slot_wake.clear()
                await self._slot_wake.wait()
        for run in list(self._running.values()):  # stuck in a thread: hand back regardless
            self._running.pop(run.lease.job_id, None)
            self._push(JobAck(run.lease, JobOutcome.HAND_BACK, b"0"))
        with anyio.CancelScope(shield=True):
            await self._flush_acks()
        for t in list(self._tasks):
            t.cancel()


def _timeout_s(task: JobTask) -> float:
    return task.timeout_ms / 1000 if task.timeout_ms else float("inf")
