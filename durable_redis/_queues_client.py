"""Queue controls of the client beyond pause / resume (docs/routing.md): a queue's state for
jobs and activity work items alike (``queue_status``) and ``drain_queue``: pause, then report
or await the end of the queue's in-flight work."""

from __future__ import annotations

import time
from typing import Any

import anyio

from durable_redis.core.jobs import validate_queue
from durable_redis.errors import ValidationError
from durable_redis.storage.activities import QueueStatus

__all__ = ["QueueControlMixin", "QueueStatus"]


class QueueControlMixin:
    """``queue_status`` and ``drain_queue``; mixed into :class:`~durable_redis.client.Client`."""

    async def _ensure_initialized(self) -> None: ...  # pragma: no cover - the Client's

    def _job_store(self) -> Any: ...  # pragma: no cover - the Client's

    async def queue_status(self, queue: str) -> QueueStatus:
        """``queue``'s state for jobs and work items: paused, work items ready / delayed /
        running, jobs running (jobs ready and delayed: ``list_queues``)."""
        validate_queue(queue)
        await self._ensure_initialized()
        status: QueueStatus = await self._job_store().queue_status(queue)
        return status

    async def drain_queue(
        self,
        queue: str,
        *,
        wait: bool = False,
        timeout: float | None = None,
        poll_interval: float = 0.2,
    ) -> QueueStatus:
        """Drain ``queue``: pause it (no new fetch of its jobs or activity work items; queued
        work stays queued, nothing is lost), then return its state; with ``wait``, once its
        in-flight work has ended (``status.running == 0``). ``timeout`` (seconds, with
        ``wait``): ``TimeoutError`` if work is still running then (the queue stays paused).
        ``resume_queue`` undoes it."""
        validate_queue(queue)
        if timeout is not None and timeout < 0:
            raise ValidationError(f"timeout must be >= 0, got {timeout!r}")
        if poll_interval <= 0:
            raise ValidationError(f"poll_interval must be > 0, got {poll_interval!r}")
        await self._ensure_initialized()
        store = self._job_store()
        await store.set_job_queue_paused(queue, True)
        status: QueueStatus = await store.queue_status(queue)
        deadline = None if timeout is None else time.monotonic() + timeout
        while wait and status.running > 0:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"queue {queue!r} still has {status.running} running after {timeout}s "
                    "(it stays paused)"
                )
            await anyio.sleep(poll_interval)
            status = await store.queue_status(queue)
        return status
