"""What the dashboard pages show, as plain data (no HTTP here): built from the Store's
management API (``get_instance``, ``read_history``, ``list_instances``, ``list_children``,
``count_by_status``) and the read-only views of :mod:`durable_redis.storage.insights` and
:mod:`durable_redis.storage.workers`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from durable_redis import ids
from durable_redis._render import decode_payload, event_dict, plain
from durable_redis.core import decode_event, decode_failure
from durable_redis.core.jobs import decode_job_task
from durable_redis.errors import CodecError
from durable_redis.storage.base import InstanceInfo, InstanceStatus
from durable_redis.storage.insights import (
    instance_sessions,
    job_overview,
    open_sessions,
    partition_overview,
    search_ids,
)
from durable_redis.storage.job_types import JobQueueInfo, JobRecord, JobState
from durable_redis.storage.workers import WorkerRegistry

__all__ = [
    "InstanceRow",
    "JobRow",
    "ScheduleRow",
    "TimelineRow",
    "fmt_age",
    "fmt_ms",
    "instance_page",
    "instances_page",
    "job_page",
    "jobs_page",
    "overview_page",
    "schedules_page",
    "workers_page",
]

# Pairs whose second event closes the first: (closing type, field naming the opening event id).
_CLOSERS = {
    "ActivityCompleted": "activity_id",
    "ActivityFailed": "activity_id",
    "TimerFired": "timer_id",
    "SubOrchestrationCompleted": "scheduled_id",
    "SubOrchestrationFailed": "scheduled_id",
}
_PAYLOAD_MAX = 4000


def fmt_ms(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def fmt_age(ms: int | None) -> str:
    """A duration in ms, short: ``850 ms``, ``12.3 s``, ``4 m 05 s``, ``2 h 10 m``."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms} ms"
    s = ms / 1000
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m} m {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} m"


def show(value: Any) -> str:
    """A decoded payload as readable text (JSON when possible), bounded in size."""
    if value is None:
        return ""
    try:
        text = json.dumps(plain(value), indent=2, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > _PAYLOAD_MAX:
        text = text[:_PAYLOAD_MAX] + f"\n... ({len(text) - _PAYLOAD_MAX} more characters)"
    return text


def payload(data: bytes | None) -> str:
    return "" if data is None else show(decode_payload(data))


@dataclass(frozen=True, slots=True)
class InstanceRow:
    instance_id: str
    name: str
    version: str
    status: str
    execution_id: int
    created: str
    updated: str
    completed: str
    took: str
    parent: str | None
    held: str | None = None  # held by a nondeterministic deploy: the divergence (deploying.md)

    @classmethod
    def of(cls, info: InstanceInfo, now_ms: int) -> InstanceRow:
        end = info.completed_at_ms if info.completed_at_ms is not None else now_ms
        return cls(
            instance_id=info.instance_id,
            name=info.name,
            version=info.version,
            status=info.status.value,
            execution_id=info.execution_id,
            created=fmt_ms(info.created_at_ms),
            updated=fmt_ms(info.updated_at_ms),
            completed=fmt_ms(info.completed_at_ms),
            took=fmt_age(max(0, end - info.created_at_ms)),
            parent=info.parent_instance_id,
            held=info.held,
        )


@dataclass(slots=True)
class TimelineRow:
    event_id: int
    type: str
    at: str  # offset from the execution's start
    time: str
    details: str
    duration: str = ""
    closes: int | None = None  # the event this one completes
    left_pct: float = 0.0
    width_pct: float = 0.0
    ok: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def _details(event: dict[str, Any]) -> str:
    parts = []
    for key, value in event.items():
        if key in ("event_id", "type", "timestamp") or value in (None, [], ""):
            continue
        if key == "failure" and isinstance(value, dict):
            value = f"{value.get('type_name')}: {value.get('message')}"
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        if len(text) > 200:
            text = text[:200] + "..."
        parts.append(f"{key}={text}")
    return "  ".join(parts)


def timeline(raw_history: list[bytes], now_ms: int, running: bool) -> list[TimelineRow]:
    """History events as rows, each closing event with the duration since its opening one, and
    bars (left/width in % of the execution's span) for the spans."""
    events = [decode_event(raw) for raw in raw_history]
    if not events:
        return []
    start = events[0].timestamp_ms
    end = now_ms if running else events[-1].timestamp_ms
    span = max(1, end - start)
    opened: dict[int, int] = {}
    rows: list[TimelineRow] = []
    by_id: dict[int, TimelineRow] = {}
    for event in events:
        data = event_dict(event)
        kind = type(event).__name__
        row = TimelineRow(
            event_id=event.event_id,
            type=kind,
            at=f"+{(event.timestamp_ms - start) / 1000:.3f} s",
            time=fmt_ms(event.timestamp_ms),
            details=_details(data),
            ok="Failed" not in kind,
        )
        row.left_pct = 100.0 * (event.timestamp_ms - start) / span
        opened[event.event_id] = event.timestamp_ms
        closer = _CLOSERS.get(kind)
        if closer is not None:
            opener_id = int(getattr(event, closer))
            began = opened.get(opener_id)
            if began is not None:
                row.closes = opener_id
                row.duration = fmt_age(event.timestamp_ms - began)
                row.left_pct = 100.0 * (began - start) / span
                row.width_pct = max(0.5, 100.0 * (event.timestamp_ms - began) / span)
                opener = by_id.get(opener_id)
                if opener is not None:
                    opener.duration = "→ " + row.duration
                    opener.left_pct, opener.width_pct = row.left_pct, row.width_pct
        rows.append(row)
        by_id[event.event_id] = row
    return rows


async def overview_page(store: Any) -> dict[str, Any]:
    parts = await partition_overview(store)
    workers = await WorkerRegistry(store).list()
    counts = {s.value: sum(p.counts.get(s.value, 0) for p in parts) for s in InstanceStatus}

    def worst(attr: str) -> int | None:
        ages = [getattr(p, attr) for p in parts if getattr(p, attr) is not None]
        return max(ages) if ages else None

    totals = {
        "ready_instances": sum(p.ready_instances for p in parts),
        "timers": sum(p.timers for p in parts),
        "locked_instances": sum(p.locked_instances for p in parts),
        "work_ready": sum(p.work_ready for p in parts),
        "session_work_ready": sum(p.session_work_ready for p in parts),
        "work_delayed": sum(p.work_delayed for p in parts),
        "work_leased": sum(p.work_leased for p in parts),
        "sessions_open": sum(p.sessions_open for p in parts),
    }
    finished = {k: sum(p.finished.get(k, 0) for p in parts) for k in ("1m", "5m", "15m")}
    return {
        "counts": counts,
        "total": sum(counts.values()),
        "totals": totals,
        "finished": finished,
        "oldest_message_age_ms": worst("oldest_message_age_ms"),
        "oldest_work_age_ms": worst("oldest_work_age_ms"),
        "partitions": parts,
        "workers": len(workers),
        "turns_in_flight": sum(w.turns_in_flight for w in workers),
        "activities_in_flight": sum(w.activities_in_flight for w in workers),
        "job_counts": await job_counts(store),
    }


async def instances_page(
    store: Any,
    *,
    status: str | None,
    name: str | None,
    prefix: str | None,
    created_after_ms: int | None,
    created_before_ms: int | None,
    cursor: str | None,
    limit: int,
) -> dict[str, Any]:
    now = await store.server_time_ms()
    if prefix:
        ids = await search_ids(store, prefix, limit=limit)
        infos = [i for i in [await store.get_instance(x) for x in ids] if i is not None]
        wanted = InstanceStatus(status) if status else None
        infos = [
            i
            for i in infos
            if (wanted is None or i.status is wanted) and (not name or i.name == name)
        ]
        return {"rows": [InstanceRow.of(i, now) for i in infos], "next_cursor": None}
    page = await store.list_instances(
        status=InstanceStatus(status) if status else None,
        name=name or None,
        created_after_ms=created_after_ms,
        created_before_ms=created_before_ms,
        limit=limit,
        cursor=cursor,
    )
    return {
        "rows": [InstanceRow.of(i, now) for i in page.instances],
        "next_cursor": page.next_cursor,
    }


async def instance_page(store: Any, instance_id: str, execution: int | None) -> dict[str, Any]:
    info = await store.get_instance(instance_id)
    if info is None:
        return {"found": False, "instance_id": instance_id}
    now = await store.server_time_ms()
    execution_id = execution or info.execution_id
    raw = await store.read_history(instance_id, execution_id)
    failure = decode_failure(info.error) if info.error is not None else None
    running = not info.status.is_terminal
    return {
        "found": True,
        "instance_id": instance_id,
        "row": InstanceRow.of(info, now),
        "terminal": info.status.is_terminal,
        "input": payload(info.input),
        "output": payload(info.output),
        "custom_status": payload(info.custom_status),
        "failure": failure,
        "execution": execution_id,
        "executions": list(range(1, info.execution_id + 1)),
        "timeline": timeline(raw, now, running and execution_id == info.execution_id),
        "children": await store.list_children(instance_id),
        "sessions": await instance_sessions(store, instance_id),
        "now_ms": now,
    }


async def rerun(store: Any, instance_id: str) -> str:
    """Start a finished root instance again, same id, name, version and input (the stored
    bytes, so any codec round-trips); its old history and children are replaced. Returns a
    message for the page."""
    import uuid

    from durable_redis import core
    from durable_redis.storage.base import ExistingInstancePolicy, InstanceCreate

    info = await store.get_instance(instance_id)
    if info is None:
        return "no such instance"
    if not info.status.is_terminal:
        return f"only a finished instance can be re-run; this one is {info.status.value}"
    if info.parent_instance_id:
        return "a child instance is re-run by its parent; re-run the root instead"
    start = core.start_message(name=info.name, version=info.version, input=info.input)
    await store.create_instance(
        instance_id,
        InstanceCreate(name=info.name, version=info.version, input=info.input),
        ids.client_message_id("start", uuid.uuid4().hex),
        core.encode_message(start),
        policy=ExistingInstancePolicy.TERMINATE_IF_DONE,
    )
    return "re-run started (same id and input)"


async def workers_page(store: Any) -> dict[str, Any]:
    now = await store.server_time_ms()
    workers = await WorkerRegistry(store).list()
    sessions = await open_sessions(store)
    owned: dict[str, int] = {}
    for s in sessions:  # live, from the session records (heartbeats are a renewal apart)
        if s.owner:
            owned[s.owner] = owned.get(s.owner, 0) + 1
    return {"workers": workers, "sessions": sessions, "owned": owned, "now_ms": now}


# -- jobs and schedules -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobRow:
    job_id: str
    name: str
    status: str
    attempt: int
    deliveries: int
    progress: str
    created: str
    started: str
    finished: str
    took: str
    worker_id: str | None
    error: str  # "Type: message", one line

    @classmethod
    def of(cls, rec: JobRecord, now_ms: int) -> JobRow:
        began = rec.started_at_ms
        end = rec.finished_at_ms if rec.finished_at_ms is not None else now_ms
        failure = decode_failure(rec.error) if rec.error is not None else None
        return cls(
            job_id=rec.job_id,
            name=rec.name,
            status=rec.state.value,
            attempt=rec.attempt,
            deliveries=rec.deliveries,
            progress=_one_line(payload(rec.progress)),
            created=fmt_ms(rec.created_at_ms),
            started=fmt_ms(began),
            finished=fmt_ms(rec.finished_at_ms),
            took="-" if began is None else fmt_age(max(0, end - began)),
            worker_id=rec.worker_id,
            error="" if failure is None else _one_line(f"{failure.type_name}: {failure.message}"),
        )


def _one_line(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


async def job_counts(store: Any) -> dict[str, Any] | None:
    """Jobs queued (ready + delayed), running, finished (retained), and the finished ones by
    state while few enough are retained (:func:`~durable_redis.storage.insights.job_overview`).
    None for a store without jobs."""
    if not hasattr(store, "job_counts"):
        return None
    jobs = await job_overview(store)
    return {
        JobState.QUEUED.value: jobs.ready + jobs.delayed,
        "ready": jobs.ready,
        "delayed": jobs.delayed,
        JobState.RUNNING.value: jobs.running,
        "finished": jobs.finished,
        "finished_by_state": jobs.finished_by_state,
    }


async def jobs_page(
    store: Any, *, status: str | None, name: str | None, limit: int
) -> dict[str, Any]:
    now = await store.server_time_ms()
    state = JobState(status) if status else None
    records = await store.list_jobs(state=state, name=name or None, limit=limit)
    return {
        "rows": [JobRow.of(r, now) for r in records],
        "job_counts": await job_counts(store),
        "limit": limit,
    }


async def job_page(store: Any, job_id: str) -> dict[str, Any]:
    rec = await store.get_job(job_id)
    if rec is None:
        return {"found": False, "job_id": job_id}
    now = await store.server_time_ms()
    try:
        task = decode_job_task(rec.spec)
        job_input, max_attempts, timeout_ms = (
            payload(task.input),
            task.max_attempts,
            task.timeout_ms,
        )
    except CodecError:
        job_input, max_attempts, timeout_ms = f"<{len(rec.spec)} bytes>", None, None
    return {
        "found": True,
        "job_id": job_id,
        "row": JobRow.of(rec, now),
        "terminal": rec.state.is_terminal,
        "retryable": rec.state in (JobState.FAILED, JobState.CANCELLED),
        "input": job_input,
        "max_attempts": max_attempts,
        "timeout": fmt_age(timeout_ms),
        "result": payload(rec.output),
        "progress": payload(rec.progress),
        "failure": decode_failure(rec.error) if rec.error is not None else None,
        "result_ttl": fmt_age(rec.result_ttl_ms),
    }


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    name: str
    activity: str
    when: str  # "cron 0 * * * *" or "every 30.0 s"
    timezone: str
    catch_up: str
    overlap: str
    paused: bool
    next_run: str
    next_in: str
    last_job_id: str | None  # the last instance id for an orchestration schedule
    orchestration: str | None = None  # set: each tick starts an instance of it


async def schedules_page(client: Any) -> dict[str, Any]:
    now = await client.store.server_time_ms()
    rows = []
    for s in await client.list_schedules():
        due = None if s.next_run_at is None else int(s.next_run_at.timestamp() * 1000)
        every = None if s.every is None else int(s.every.total_seconds() * 1000)
        rows.append(
            ScheduleRow(
                name=s.name,
                activity=s.activity,
                when=f"cron {s.cron}" if s.cron else f"every {fmt_age(every)}",
                timezone=s.timezone,
                catch_up=s.catch_up,
                overlap=s.overlap,
                paused=s.paused,
                next_run=fmt_ms(due),
                next_in="-" if due is None else fmt_age(max(0, due - now)),
                last_job_id=s.last_job_id,
                orchestration=s.orchestration,
            )
        )
    return {"schedules": rows}


@dataclass(frozen=True, slots=True)
class QueueRow:
    name: str
    jobs_ready: int
    jobs_delayed: int
    work_ready: int  # activity work items (plain and session)
    work_delayed: int
    running: int  # jobs and activities leased
    paused: bool


async def queues_page(client: Any) -> dict[str, Any]:
    """Every queue known (jobs enqueued to it, activities routed to it, or paused), and
    "default": its jobs and activity work, what runs, and whether it is paused."""
    known = {q.name: q for q in await client.list_queues()}  # one queue_status each already
    if "default" not in known:  # no job ever enqueued to it: its activity work alone
        status = await client.queue_status("default")
        known["default"] = JobQueueInfo(
            "default",
            0,
            0,
            status.paused,
            work_ready=status.work_ready,
            work_delayed=status.work_delayed,
            running=status.running,
        )
    rows = [
        QueueRow(
            name=name,
            jobs_ready=info.ready,
            jobs_delayed=info.delayed,
            work_ready=info.work_ready,
            work_delayed=info.work_delayed,
            running=info.running,
            paused=info.paused,
        )
        for name, info in sorted(known.items())
    ]
    return {"queues": rows}
