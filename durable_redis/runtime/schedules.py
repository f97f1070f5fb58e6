"""The schedule runner of a worker: declares the app's schedules at start, then claims due
ticks (``claim_schedule`` / ``claim_schedule_start``: a compare-and-set on the Redis clock, the
job enqueued or the orchestration instance created in the same script), so each tick runs once
across every worker, with no scheduler process and no leader.

It sleeps until the earliest due time of any schedule, at most ``fetch_wait`` (so a schedule
created or resumed through a client is seen within that).
"""

from __future__ import annotations

import logging
from typing import Any

import anyio

from durable_redis import core
from durable_redis.core import App, Codec
from durable_redis.core.registry import activity_queue
from durable_redis.core.schedules import (
    decode_schedule,
    schedule_declaration,
    spec_of,
    ticks_due,
)
from durable_redis.errors import NamespaceMissingError
from durable_redis.runtime.options import WorkerOptions

__all__ = ["ScheduleRunner", "declare_schedule"]

logger = logging.getLogger(__name__)


async def declare_schedule(store: Any, spec: core.schedules.ScheduleSpec) -> str:
    """Create or update ``spec`` in the store; its first run is the next tick from now."""
    result: str = await store.declare_schedule(
        *schedule_declaration(spec, await store.server_time_ms())
    )
    return result


class ScheduleRunner:
    def __init__(self, app: App, store: Any, options: WorkerOptions, codec: Codec) -> None:
        self._app = app
        self._store = store
        self._options = options
        self._codec = codec
        self.claimed = 0  # ticks this worker claimed (introspection)

    @property
    def enabled(self) -> bool:
        return hasattr(self._store, "claim_schedule")

    async def loop(self, stopping: anyio.Event) -> None:
        for definition in getattr(self._app, "schedules", []):
            try:
                await declare_schedule(self._store, spec_of(definition, self._codec))
            except NamespaceMissingError:
                raise
            except Exception:
                logger.exception("declaring schedule %s failed", definition.name)
        while not stopping.is_set():
            wait = self._options.fetch_wait
            try:
                now = await self._store.server_time_ms()
                for record in await self._store.list_schedules(due_before_ms=now):
                    await self._fire(record, now)
                nxt = await self._store.next_schedule_due_ms()
                if nxt is not None:
                    now = await self._store.server_time_ms()
                    wait = min(wait, max(0.005, (nxt - now) / 1000))
            except NamespaceMissingError:
                raise
            except Exception:
                logger.exception("schedule loop failed; retrying")
            with anyio.move_on_after(wait):
                await stopping.wait()

    async def _fire(self, record: Any, now: int) -> None:
        if record.next_due_ms is None:
            return
        spec = decode_schedule(record.spec)
        ticks, nxt = ticks_due(spec, record.next_due_ms, now)
        claim: dict[str, Any] = {
            "expected_due_ms": record.next_due_ms,
            "next_due_ms": nxt,
            "overlap": spec.overlap,
            "ticks": ticks,
        }
        if spec.orchestration is not None:
            start = core.start_message(
                name=spec.orchestration, version=spec.version, input=spec.task
            )
            got = await self._store.claim_schedule_start(
                record.name,
                last_instance_id=record.last_job_id,
                orchestration=spec.orchestration,
                version=spec.version,
                input=spec.task,
                start_message=core.encode_message(start),
                **claim,
            )
        else:
            got = await self._store.claim_schedule(
                record.name,
                activity=spec.activity,
                task=spec.task,
                priority=spec.priority,
                result_ttl_ms=spec.result_ttl_ms,
                queue=activity_queue(self._app, spec.activity),
                **claim,
            )
        if got is None:
            return  # another worker claimed it
        made, overlapped = got
        self.claimed += 1
        if overlapped:
            logger.info("schedule %s: tick skipped, its previous run is still going", spec.name)
        elif len(ticks) != 1:
            logger.info(
                "schedule %s: %d missed ticks, %d runs started", spec.name, len(ticks), made
            )
