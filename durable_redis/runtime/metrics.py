"""Prometheus metrics of one worker process (``durable-redis worker ... --metrics-port N``).

Needs the ``metrics`` extra (``prometheus_client``). The worker's store is wrapped in a
:class:`MeteredStore` that watches the calls the dispatchers already make (fetch, commit, ack,
abandon, renew), so measuring adds no Redis round trip and no hook in the runtime. Gauges of
in-flight work and owned sessions are read from the worker when Prometheus scrapes.

Names (docs/operations.md lists them with example alerts):

- ``durable_redis_turns_total{orchestration, outcome}``: committed turns by the status they left
  the instance in (``running``, ``completed``, ``failed``, ``cancelled``, ``continued_as_new``),
  or ``abandoned`` / ``lease_lost``;
- ``durable_redis_turn_duration_seconds{orchestration}``: lock to commit (histogram);
- ``durable_redis_activities_total{activity, outcome}``: ``completed``, ``failed``,
  ``abandoned`` (handed back or retried later), ``lease_lost`` (cancelled, late completion);
- ``durable_redis_activity_duration_seconds{activity}``: lease to ack (histogram);
- ``durable_redis_lease_renewals_total{kind}`` and ``durable_redis_lease_losses_total{kind}``,
  kind ``turn``, ``activity`` or ``session``;
- ``durable_redis_turns_in_flight``, ``durable_redis_activities_in_flight``,
  ``durable_redis_sessions_owned``: gauges;
- ``durable_redis_worker_info{worker_id, version}``: always 1.

Schedule-to-start latency is not measured per item here: a work item carries no enqueue time.
The dashboard's overview shows the queue's lag (age of the oldest waiting message / activity).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from durable_redis.errors import LeaseLostError
from durable_redis.storage.base import (
    OrchestrationLease,
    SessionRef,
    TurnCommit,
    WorkItemLease,
)

__all__ = ["MeteredStore", "WorkerMetrics", "serve_metrics"]

logger = logging.getLogger(__name__)

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_MAX_OPEN = 100_000  # leases remembered for their duration (a leak guard, never reached)


class WorkerMetrics:
    """The metrics of one worker, in their own registry (never the global one)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.turns = Counter(
            "durable_redis_turns",
            "Orchestration turns by outcome",
            ["orchestration", "outcome"],
            registry=r,
        )
        self.turn_seconds = Histogram(
            "durable_redis_turn_duration_seconds",
            "Orchestration turn, lock to commit",
            ["orchestration"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.activities = Counter(
            "durable_redis_activities",
            "Activity executions by outcome",
            ["activity", "outcome"],
            registry=r,
        )
        self.activity_seconds = Histogram(
            "durable_redis_activity_duration_seconds",
            "Activity execution, lease to ack",
            ["activity"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.renewals = Counter(
            "durable_redis_lease_renewals", "Leases renewed", ["kind"], registry=r
        )
        self.losses = Counter("durable_redis_lease_losses", "Leases lost", ["kind"], registry=r)
        self.turns_in_flight = Gauge(
            "durable_redis_turns_in_flight", "Orchestration turns running now", registry=r
        )
        self.activities_in_flight = Gauge(
            "durable_redis_activities_in_flight", "Activities running now", registry=r
        )
        self.sessions_owned = Gauge(
            "durable_redis_sessions_owned", "Sessions this worker holds", registry=r
        )
        self.info = Gauge(
            "durable_redis_worker_info",
            "This worker (always 1)",
            ["worker_id", "version"],
            registry=r,
        )
        for kind in ("turn", "activity", "session"):  # present from the first scrape
            self.renewals.labels(kind)
            self.losses.labels(kind)

    def bind(self, worker: Any) -> None:
        """Read the gauges from ``worker`` at every scrape."""
        from durable_redis._version import __version__

        self.turns_in_flight.set_function(lambda: float(worker.turns_in_flight))
        self.activities_in_flight.set_function(lambda: float(worker.activities_in_flight))
        self.sessions_owned.set_function(lambda: float(worker.sessions.owned_count))
        self.info.labels(worker.worker_id, __version__).set(1)


def _activity_name(lease: WorkItemLease) -> str:
    from durable_redis import core

    try:
        return str(core.decode_task(lease.data).name)
    except Exception:
        return "unknown"


def _activity_outcome(completion: bytes) -> str:
    from durable_redis import core

    try:
        message = core.decode_message(completion)
    except Exception:
        return "unknown"
    return "failed" if type(message).__name__ == "ActivityFailed" else "completed"


class MeteredStore:
    """A Store proxy that counts and times what passes through it; anything else delegates.

    Every wrapped method hands back what the inner store returned, whatever its type, so a
    change to the Store contract cannot be lost here."""

    def __init__(self, inner: Any, metrics: WorkerMetrics) -> None:
        self.inner = inner
        self.metrics = metrics
        self._turns: dict[str, tuple[float, str]] = {}  # token -> (start, orchestration)
        self._items: dict[str, tuple[float, str]] = {}  # item id -> (start, activity)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    # -- turns ---------------------------------------------------------------------------------
    async def fetch_orchestration(self, *, lock_ms: int, wait_ms: int = 0, **more: Any) -> Any:
        lease = await self.inner.fetch_orchestration(lock_ms=lock_ms, wait_ms=wait_ms, **more)
        self._start_turn(lease)
        return lease

    def _start_turn(self, lease: OrchestrationLease | None) -> None:
        """A turn starts: fetched, or locked for us by an ack (local hand-off)."""
        if lease is not None and len(self._turns) < _MAX_OPEN:
            name = lease.instance.name if lease.instance is not None else ""
            self._turns[lease.token] = (time.perf_counter(), name or "unknown")

    def _start_items(self, leases: Sequence[WorkItemLease]) -> None:
        """Work items start: fetched, or leased to us by a commit (local hand-off)."""
        now = time.perf_counter()
        for lease in leases:
            if len(self._items) < _MAX_OPEN:
                self._items[lease.item_id] = (now, _activity_name(lease))

    def _end_turn(self, lease: OrchestrationLease, outcome: str) -> None:
        start, name = self._turns.pop(lease.token, (None, "unknown"))
        if outcome not in ("abandoned", "lease_lost") and start is not None:
            self.metrics.turn_seconds.labels(name).observe(time.perf_counter() - start)
        self.metrics.turns.labels(name, outcome).inc()

    async def _committed(self, lease: OrchestrationLease, commit: TurnCommit, call: Any) -> Any:
        """Await ``call`` (a commit of ``lease``), counting the turn's outcome."""
        try:
            result = await call
        except LeaseLostError:
            self.metrics.losses.labels("turn").inc()
            self._end_turn(lease, "lease_lost")
            raise
        self._end_turn(lease, str(commit.status.value))
        return result

    async def commit_turn(self, lease: OrchestrationLease, commit: TurnCommit, **kw: Any) -> Any:
        result = await self._committed(lease, commit, self.inner.commit_turn(lease, commit, **kw))
        if result:
            self._start_items(result)
        return result

    async def commit_turn_and_claim(
        self, lease: OrchestrationLease, commit: TurnCommit, **kw: Any
    ) -> Any:
        call = self.inner.commit_turn_and_claim(lease, commit, **kw)
        result = await self._committed(lease, commit, call)
        if result[0]:
            self._start_items(result[0])
        return result

    async def lock_claimed(self, claimed: Any, lock_ms: int) -> Any:
        lease = await self.inner.lock_claimed(claimed, lock_ms)
        self._start_turn(lease)
        return lease

    async def abandon_orchestration(self, lease: OrchestrationLease, **kwargs: Any) -> Any:
        try:
            return await self.inner.abandon_orchestration(lease, **kwargs)
        finally:
            self._end_turn(lease, "abandoned")

    async def renew_orchestration(self, lease: OrchestrationLease, lock_ms: int) -> int:
        try:
            until = int(await self.inner.renew_orchestration(lease, lock_ms))
        except LeaseLostError:
            self.metrics.losses.labels("turn").inc()
            raise
        self.metrics.renewals.labels("turn").inc()
        return until

    # -- activities ----------------------------------------------------------------------------
    async def fetch_work_items(self, worker_id: str, **kwargs: Any) -> Any:
        leases = await self.inner.fetch_work_items(worker_id, **kwargs)
        self._start_items(leases)
        return leases

    def _end_item(self, lease: WorkItemLease, outcome: str) -> None:
        start, name = self._items.pop(lease.item_id, (None, None))
        if name is None:
            name = _activity_name(lease)
        if outcome in ("completed", "failed") and start is not None:
            self.metrics.activity_seconds.labels(name).observe(time.perf_counter() - start)
        self.metrics.activities.labels(name, outcome).inc()

    async def ack_work_item(
        self, lease: WorkItemLease, message_id: str, completion: bytes, **kw: Any
    ) -> Any:
        try:
            result = await self.inner.ack_work_item(lease, message_id, completion, **kw)
        except LeaseLostError:
            self._end_item(lease, "lease_lost")
            raise
        self._end_item(lease, _activity_outcome(completion))
        self._start_turn(result)
        return result

    async def abandon_work_item(self, lease: WorkItemLease, **kwargs: Any) -> Any:
        try:
            return await self.inner.abandon_work_item(lease, **kwargs)
        finally:
            self._end_item(lease, "abandoned")

    async def renew_work_items(
        self, leases: Sequence[WorkItemLease], lock_ms: int, session_lock_ms: int | None = None
    ) -> list[str]:
        lost: list[str] = await self.inner.renew_work_items(leases, lock_ms, session_lock_ms)
        self.metrics.renewals.labels("activity").inc(len(leases) - len(lost))
        if lost:
            self.metrics.losses.labels("activity").inc(len(lost))
        return lost

    async def renew_sessions(
        self, worker_id: str, sessions: Sequence[SessionRef], lock_ms: int
    ) -> list[SessionRef]:
        lost: list[SessionRef] = await self.inner.renew_sessions(worker_id, sessions, lock_ms)
        self.metrics.renewals.labels("session").inc(len(sessions) - len(lost))
        if lost:
            self.metrics.losses.labels("session").inc(len(lost))
        return lost


def serve_metrics(metrics: WorkerMetrics, port: int, host: str = "127.0.0.1") -> Any:
    """Serve ``/metrics`` on ``host:port`` in a daemon thread; returns the server (shutdown())."""
    server, _thread = start_http_server(port, addr=host, registry=metrics.registry)
    logger.info("metrics on http://%s:%d/metrics", host, port)
    return server
