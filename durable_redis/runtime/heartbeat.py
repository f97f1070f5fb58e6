"""The worker's heartbeat into the live worker registry (``storage.workers``).

Paced by the activity dispatcher's lease-renewal loop: after each renewal the loop calls
:meth:`Heartbeat.poke`, which only sets an event; :meth:`Heartbeat.run`, a task of its own,
sends the beat (one round trip per renewal interval, which is shorter than a lease). So a slow or
retrying heartbeat never delays a lease renewal. Sent once at start, removed at graceful
shutdown. The record's TTL is one lease (``lock_timeout``), so a killed worker drops out of
``durable-redis workers`` within one lease. A failed heartbeat is logged and never stops the
worker.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import anyio

from durable_redis.storage.workers import MAX_LISTED_SESSIONS, WorkerInfo, registry_for

__all__ = ["Heartbeat"]

logger = logging.getLogger(__name__)


class Heartbeat:
    """Reports one :class:`~durable_redis.runtime.Worker` (None registry: a non-Redis store)."""

    def __init__(self, worker: Any) -> None:
        from durable_redis._version import __version__

        self._worker = worker
        self._registry = registry_for(worker.store)
        self._version = __version__
        self._host = socket.gethostname()
        self._pid = os.getpid()
        self._started_ms: int | None = None
        self._app = str(getattr(worker.app, "name", "") or type(worker.app).__name__)
        self._due: anyio.Event | None = None

    def info(self, now_ms: int) -> WorkerInfo:
        worker = self._worker
        if self._started_ms is None:
            self._started_ms = now_ms
        owned = worker.sessions.owned()
        return WorkerInfo(
            worker_id=worker.worker_id,
            host=self._host,
            pid=self._pid,
            version=self._version,
            app=self._app,
            queues=("orchestrations", "activities"),
            started_at_ms=self._started_ms,
            last_heartbeat_ms=now_ms,
            ttl_ms=worker.options.lock_ms,
            turns_in_flight=worker.turns_in_flight,
            activities_in_flight=worker.activities_in_flight,
            sessions_owned=len(owned),
            sessions=tuple(f"{r.instance_id}/{r.session_id}" for r in owned[:MAX_LISTED_SESSIONS]),
        )

    def poke(self) -> None:
        """A beat is due (called by the renewal loop; never blocks)."""
        if self._due is not None:
            self._due.set()

    async def run(self) -> None:
        """Beat whenever poked, until cancelled."""
        while True:
            self._due = due = anyio.Event()
            await due.wait()
            await self.beat()

    async def beat(self) -> None:
        if self._registry is None:
            return
        try:
            store = self._registry._store
            await self._registry.heartbeat(self.info(store._now_ms()))
        except Exception:
            logger.warning("worker heartbeat failed; retrying at the next renewal", exc_info=True)

    async def remove(self) -> None:
        if self._registry is None:
            return
        try:
            await self._registry.remove(self._worker.worker_id)
        except Exception:
            logger.warning("removing the worker's heartbeat failed; it expires", exc_info=True)
