"""Burst mode: run a worker until the namespace is idle, then stop (arq's ``burst=True``).

**Idle**, as :func:`is_idle` judges it, is all of these at once, seen on
``idle_checks`` polls in a row ``poll_interval`` apart:

- this worker runs nothing: no turn, no activity and no job in flight;
- Redis holds nothing ready or running in the namespace: no orchestration message visible now,
  no ready activity (session ones and routed queues included), no leased activity, no locked
  instance, and no queued (delayed ones included) or running job;
- no timer is due within ``horizon`` seconds: neither a future orchestration message (a durable
  timer, a delayed start, a retry back-off) nor a delayed activity.

A timer due later than the horizon does not keep the worker up; a schedule fires only while a
worker runs, so burst mode does not wait for its next firing. ``run_until_idle`` checks the
whole namespace, not only what this worker could serve: work for queues it does not serve keeps it
running until ``timeout``.
"""

from __future__ import annotations

from typing import Any, Protocol

import anyio

from durable_redis.storage.base import QueueDepths, Store

__all__ = ["DEFAULT_HORIZON", "is_idle", "run_until_idle", "wait_until_idle"]

DEFAULT_HORIZON = 1.0  # seconds: a timer due sooner keeps a burst worker up


class Worker(Protocol):
    """What burst mode uses of ``runtime.worker.Worker`` (no import of it: no cycle)."""

    store: Store

    @property
    def is_running(self) -> bool: ...
    @property
    def turns_in_flight(self) -> int: ...
    @property
    def activities_in_flight(self) -> int: ...
    @property
    def jobs_in_flight(self) -> int: ...
    def stop(self, *, grace_period: float | None = None) -> None: ...
    async def run(self, *, handle_signals: bool = False, burst: bool = False) -> None: ...


def depths_idle(depths: QueueDepths, horizon_ms: int) -> bool:
    """Redis's side of idle, from :meth:`Store.queue_depths` (see the module docstring)."""
    extra = depths.extra
    due_now = depths.orchestration_messages - depths.timers
    if due_now or depths.work_items or depths.session_work_items:
        return False
    if extra.get("leased_work_items", 0) or extra.get("locked_instances", 0):
        return False
    next_timer = extra.get("next_timer_in_ms", -1)
    return next_timer < 0 or next_timer > horizon_ms


async def is_idle(worker: Worker, horizon: float = DEFAULT_HORIZON) -> bool:
    """True if ``worker`` runs nothing and its namespace is idle (module docstring)."""
    if worker.turns_in_flight or worker.activities_in_flight or worker.jobs_in_flight:
        return False
    if not depths_idle(await worker.store.queue_depths(), int(horizon * 1000)):
        return False
    job_counts: Any = getattr(worker.store, "job_counts", None)
    if job_counts is None:
        return True
    from durable_redis.storage.job_types import JobState

    counts = await job_counts()
    return not (counts[JobState.QUEUED] or counts[JobState.RUNNING])


async def wait_until_idle(
    worker: Worker,
    *,
    timeout: float | None = None,
    horizon: float = DEFAULT_HORIZON,
    poll_interval: float = 0.05,
    idle_checks: int = 2,
) -> None:
    """Return once ``worker`` (running) and its namespace are idle; the worker keeps running.

    TimeoutError if that takes longer than ``timeout`` seconds.
    """
    with anyio.fail_after(timeout):
        while not worker.is_running:
            await anyio.sleep(0.005)
        streak = 0
        while True:
            streak = streak + 1 if await is_idle(worker, horizon) else 0
            if streak >= idle_checks:
                return
            await anyio.sleep(poll_interval)


async def run_until_idle(
    worker: Worker,
    *,
    timeout: float | None = None,
    horizon: float = DEFAULT_HORIZON,
    poll_interval: float = 0.05,
    idle_checks: int = 2,
    handle_signals: bool = False,
) -> None:
    """Run ``worker`` until idle (module docstring), then stop it gracefully and return.

    TimeoutError if it is not idle within ``timeout`` seconds; the worker is stopped first (its
    in-flight work handed back, as at any shutdown).
    """
    timed_out = False

    async def watch() -> None:
        nonlocal timed_out
        try:
            await wait_until_idle(
                worker,
                timeout=timeout,
                horizon=horizon,
                poll_interval=poll_interval,
                idle_checks=idle_checks,
            )
        except TimeoutError:
            timed_out = True
            worker.stop(grace_period=0.0)
        else:
            worker.stop()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        await worker.run(handle_signals=handle_signals)
        tg.cancel_scope.cancel()  # stopped otherwise (stop(), a signal): stop watching too
    if timed_out:
        raise TimeoutError(f"worker not idle within {timeout}s")
