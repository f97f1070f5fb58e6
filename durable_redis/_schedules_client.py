"""The schedule half of the client: create, list, pause, resume, trigger and delete schedules
(an activity run as a job, or an orchestration started, on a cron expression or an interval;
see ``@app.schedule``)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from durable_redis import ids
from durable_redis._identity import activity_identity, orchestration_identity
from durable_redis.core import App, Codec
from durable_redis.core.retry import RetryPolicy
from durable_redis.core.schedules import (
    ScheduleDefinition,
    decode_schedule,
    next_tick,
    schedule_declaration,
    spec_of,
    target_of,
)
from durable_redis.errors import ScheduleNotFoundError, ValidationError
from durable_redis.ids import validate_id

__all__ = ["ScheduleInfo", "SchedulesClientMixin"]


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    name: str
    activity: str
    cron: str | None
    every: timedelta | None
    timezone: str
    catch_up: str
    overlap: str
    paused: bool
    next_run_at: datetime | None
    last_job_id: str | None  # the last run's job id, or instance id for an orchestration
    # "activity" (each tick enqueues a job) or "orchestration" (each tick starts an instance)
    target: str = "activity"
    orchestration: str | None = None


class SchedulesClientMixin:
    app: App | None
    codec: Codec

    async def _ensure_initialized(self) -> None:  # provided by Client
        raise NotImplementedError

    def _sched_store(self) -> Any:
        return getattr(self, "store")  # noqa: B009 (Client's attribute)

    async def create_schedule(
        self,
        name: str,
        activity: str | Callable[..., Any] | None = None,
        input: Any = None,
        *,
        orchestration: str | Callable[..., Any] | None = None,
        cron: str | None = None,
        every: float | timedelta | None = None,
        timezone: str = "UTC",
        catch_up: str = "skip",
        max_catch_up: int = 10,
        overlap: str = "skip",
        priority: int = 0,
        retry: RetryPolicy | None = None,
        timeout: float | timedelta | None = None,
        result_ttl: float | timedelta = 3600.0,
    ) -> ScheduleInfo:
        """Create (or replace) a schedule at run time; its first run is the next tick. The
        target is ``activity`` (each tick enqueues a job) or ``orchestration=`` (each tick
        starts one instance ``<name>@<tick ms>``; the job options are ignored there)."""
        from durable_redis._jobs_client import _ms_option

        validate_id(name, "schedule name")
        if (activity is None) == (orchestration is None):
            raise ValidationError(
                "create_schedule takes exactly one of activity and orchestration="
            )
        activity_name, orch_name, version = "", None, ""
        if orchestration is not None:
            orch_name, version, _ = orchestration_identity(orchestration, self.app)
        else:
            activity_name, _, _ = activity_identity(activity, self.app)
        definition = ScheduleDefinition(
            name=name,
            activity=activity_name,
            orchestration=orch_name,
            version=version,
            input=input,
            cron=cron,
            every_ms=_ms_option(every, "every", allow_zero=False),
            timezone=timezone,
            catch_up=catch_up,
            max_catch_up=max_catch_up,
            overlap=overlap,
            priority=priority,
            result_ttl_ms=_ms_option(result_ttl, "result_ttl", allow_zero=True) or 0,
            timeout_ms=_ms_option(timeout, "timeout", allow_zero=False),
            retry=retry,
        )
        spec = spec_of(definition, self.codec)
        await self._ensure_initialized()
        store = self._sched_store()
        await store.declare_schedule(*schedule_declaration(spec, await store.server_time_ms()))
        return await self.get_schedule(name)

    async def list_schedules(self) -> list[ScheduleInfo]:
        await self._ensure_initialized()
        records = await self._sched_store().list_schedules()
        return sorted((_info(r) for r in records), key=lambda s: s.name)

    async def get_schedule(self, name: str) -> ScheduleInfo:
        for info in await self.list_schedules():
            if info.name == name:
                return info
        raise ScheduleNotFoundError(f"no schedule {name!r}")

    async def pause_schedule(self, name: str) -> None:
        await self._ensure_initialized()
        await self._sched_store().pause_schedule(name)

    async def resume_schedule(self, name: str) -> None:
        """Resume a paused schedule from the next tick after now (missed ticks are not run)."""
        await self._ensure_initialized()
        store = self._sched_store()
        records = [r for r in await store.list_schedules() if r.name == name]
        if not records:
            raise ScheduleNotFoundError(f"no schedule {name!r}")
        spec = decode_schedule(records[0].spec)
        await store.resume_schedule(name, next_tick(spec, await store.server_time_ms()))

    async def delete_schedule(self, name: str) -> None:
        """Delete the schedule (the jobs it enqueued stay)."""
        await self._ensure_initialized()
        await self._sched_store().delete_schedule(name)

    async def trigger_schedule(self, name: str) -> Any:
        """Run the schedule now, outside its ticks: its JobHandle, or for an orchestration
        schedule the started instance's id (``<name>@now:<random>``)."""
        await self._ensure_initialized()
        records = [r for r in await self._sched_store().list_schedules() if r.name == name]
        if not records:
            raise ScheduleNotFoundError(f"no schedule {name!r}")
        spec = decode_schedule(records[0].spec)
        if spec.orchestration is not None:
            start = getattr(self, "start")  # noqa: B009 (Client's method)
            return await start(
                spec.orchestration,
                self.codec.decode(spec.task),
                instance_id=ids.schedule_now_instance_id(name, uuid.uuid4().hex[:12]),
                version=spec.version,
            )
        from durable_redis._jobs_client import JobHandle
        from durable_redis.core.registry import activity_queue
        from durable_redis.storage.job_types import NewJob

        job_id = ids.schedule_now_job_id(name, uuid.uuid4().hex[:12])
        await self._sched_store().enqueue_jobs(
            [
                NewJob(
                    job_id=job_id,
                    name=spec.activity,
                    spec=spec.task,
                    priority=spec.priority,
                    result_ttl_ms=spec.result_ttl_ms,
                    queue=activity_queue(self.app, spec.activity),
                )
            ]
        )
        return JobHandle(self, job_id)  # type: ignore[arg-type]


def _info(record: Any) -> ScheduleInfo:
    spec = decode_schedule(record.spec)
    if spec.every_ms is None and spec.cron is None:
        raise ValidationError(f"schedule {record.name!r} has neither cron nor every")
    return ScheduleInfo(
        name=record.name,
        activity=spec.activity,
        cron=spec.cron,
        every=None if spec.every_ms is None else timedelta(milliseconds=spec.every_ms),
        timezone=spec.timezone,
        catch_up=spec.catch_up,
        overlap=spec.overlap,
        paused=record.paused,
        next_run_at=None
        if record.paused or record.next_due_ms is None
        else datetime.fromtimestamp(record.next_due_ms / 1000, tz=UTC),
        last_job_id=record.last_job_id,
        target=target_of(spec)[0],
        orchestration=spec.orchestration,
    )
