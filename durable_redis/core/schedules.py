"""Schedules: run an activity as a job, or start an orchestration, on a cron expression or a
fixed interval, in a time zone.

Pure: the tick arithmetic (``ticks_due``, ``next_tick``) takes times as arguments (the Redis
clock's milliseconds, passed in by the runtime) and never reads a clock. Cron expressions are
parsed by ``cronsim`` (a small, maintained, dependency-free parser with DST handling, used by
Healthchecks.io): five fields with ranges, steps, month and day names, ``L`` and ``#``.

Policies:

- ``catch_up`` (ticks missed while no worker ran): ``"skip"`` runs none of them (the next run is
  the next future tick), ``"once"`` runs one job for all of them, ``"all"`` runs one per missed
  tick, at most ``max_catch_up``.
- ``overlap``: ``"skip"`` drops a tick while the schedule's previous job is still queued or
  running (or its previous instance is still pending or running); ``"allow"`` runs it anyway.

A schedule's target is an activity (``activity``; ``task`` is the encoded JobTask) or an
orchestration (``orchestration`` and ``version``; ``task`` is the encoded input): each tick of an
orchestration schedule starts one instance, ``<name>@<tick ms>`` (``tick_instance_base``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from durable_redis import ids
from durable_redis.core._serial import Schema
from durable_redis.core.codec import Codec
from durable_redis.core.jobs import encode_job_task, job_task
from durable_redis.core.retry import RetryPolicy
from durable_redis.errors import ValidationError

__all__ = [
    "CATCH_UP",
    "OVERLAP",
    "ScheduleDefinition",
    "ScheduleSpec",
    "decode_schedule",
    "encode_schedule",
    "next_tick",
    "schedule_declaration",
    "spec_of",
    "target_of",
    "tick_instance_base",
    "ticks_due",
    "validate_schedule",
]

CATCH_UP = ("skip", "once", "all")
OVERLAP = ("skip", "allow")


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleSpec:
    name: str
    activity: str  # "" for an orchestration schedule
    task: bytes  # the encoded JobTask every run enqueues, or the orchestration's encoded input
    cron: str | None = None
    every_ms: int | None = None
    timezone: str = "UTC"
    catch_up: str = "skip"
    max_catch_up: int = 10
    overlap: str = "skip"
    priority: int = 0
    result_ttl_ms: int = 3_600_000
    orchestration: str | None = None  # set: each tick starts an instance of it
    version: str = ""


def target_of(spec: ScheduleSpec) -> tuple[str, str]:
    """(kind, name): ("activity", name) or ("orchestration", name)."""
    if spec.orchestration is not None:
        return "orchestration", spec.orchestration
    return "activity", spec.activity


def tick_instance_base(name: str, tick_ms: int) -> str:
    """The instance id of one tick of an orchestration schedule (before the storage layer
    moves it into the schedule's partition): deterministic, so a re-run tick starts nothing."""
    return ids.tick_instance_id(name, tick_ms)


_SCHEDULES: Schema[ScheduleSpec] = Schema("schedule", (ScheduleSpec,))


def encode_schedule(spec: ScheduleSpec) -> bytes:
    return _SCHEDULES.encode(spec)


def decode_schedule(data: bytes) -> ScheduleSpec:
    return _SCHEDULES.decode(data)


def validate_schedule(
    *,
    cron: str | None,
    every_ms: int | None,
    timezone: str,
    catch_up: str,
    max_catch_up: int,
    overlap: str,
) -> None:
    """ValidationError for a bad cron expression, interval, time zone or policy."""
    if (cron is None) == (every_ms is None):
        raise ValidationError("a schedule takes exactly one of cron= and every=")
    if every_ms is not None and (not isinstance(every_ms, int) or every_ms < 1000):
        raise ValidationError(f"every must be at least 1 second, got {every_ms} ms")
    zone = _zone(timezone)
    if cron is not None:
        if not isinstance(cron, str):
            raise ValidationError(f"cron must be a string, got {cron!r}")
        try:
            CronSim(cron, datetime(2000, 1, 1, tzinfo=zone))
        except (CronSimError, ValueError, KeyError, IndexError) as exc:
            raise ValidationError(f"bad cron expression {cron!r}: {exc}") from None
    if catch_up not in CATCH_UP:
        raise ValidationError(f"catch_up must be one of {CATCH_UP}, got {catch_up!r}")
    if overlap not in OVERLAP:
        raise ValidationError(f"overlap must be one of {OVERLAP}, got {overlap!r}")
    if not isinstance(max_catch_up, int) or max_catch_up < 1:
        raise ValidationError(f"max_catch_up must be an int >= 1, got {max_catch_up!r}")


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValidationError(f"unknown time zone {name!r}") from None


def next_tick(spec: ScheduleSpec, after_ms: int) -> int:
    """The first tick strictly after ``after_ms`` (epoch ms)."""
    if spec.every_ms is not None:
        return (after_ms // spec.every_ms + 1) * spec.every_ms
    assert spec.cron is not None
    start = datetime.fromtimestamp(after_ms / 1000, tz=UTC).astimezone(_zone(spec.timezone))
    tick: datetime = next(iter(CronSim(spec.cron, start)))
    ms = int(tick.timestamp() * 1000)
    return ms if ms > after_ms else next_tick(spec, ms)


def ticks_due(spec: ScheduleSpec, due_ms: int, now_ms: int) -> tuple[list[int], int]:
    """(ticks to run now, the next due tick) for a schedule due at ``due_ms`` judged at
    ``now_ms``, by its catch-up policy. ``due_ms`` is the oldest tick not yet run."""
    missed = [due_ms]
    nxt = next_tick(spec, due_ms)
    while nxt <= now_ms and len(missed) <= spec.max_catch_up:
        missed.append(nxt)
        nxt = next_tick(spec, nxt)
    if nxt <= now_ms:  # more than max_catch_up behind: skip to the future
        nxt = next_tick(spec, now_ms)
    on_time = [t for t in missed if t >= now_ms - _GRACE_MS]
    if spec.catch_up == "skip":
        return on_time[-1:], nxt
    if spec.catch_up == "once":
        return [missed[-1]], nxt
    return missed[: spec.max_catch_up], nxt


# A tick this recent counts as on time, not missed (a worker's loop wakes a little late).
_GRACE_MS = 1_000


def schedule_declaration(spec: ScheduleSpec, now_ms: int) -> tuple[str, bytes, str, int]:
    """(name, encoded spec, spec hash, first due tick after ``now_ms``) for the store's
    ``declare_schedule``."""
    data = encode_schedule(spec)
    return spec.name, data, hashlib.sha256(data).hexdigest()[:16], next_tick(spec, now_ms)


@dataclass(frozen=True, slots=True)
class ScheduleDefinition:
    """A schedule as declared (``@app.schedule``, ``client.create_schedule``), validated:
    ValidationError for a bad cron expression, interval, time zone or policy."""

    name: str
    activity: str  # "" when ``orchestration`` is set
    input: object = None
    cron: str | None = None
    every_ms: int | None = None
    timezone: str = "UTC"
    catch_up: str = "skip"
    max_catch_up: int = 10
    overlap: str = "skip"
    priority: int = 0
    result_ttl_ms: int = 3_600_000
    timeout_ms: int | None = None
    retry: RetryPolicy | None = None
    orchestration: str | None = None
    version: str = ""

    def __post_init__(self) -> None:
        if bool(self.activity) == (self.orchestration is not None):
            raise ValidationError("a schedule targets exactly one activity or orchestration")
        validate_schedule(
            cron=self.cron,
            every_ms=self.every_ms,
            timezone=self.timezone,
            catch_up=self.catch_up,
            max_catch_up=self.max_catch_up,
            overlap=self.overlap,
        )


def spec_of(definition: ScheduleDefinition, codec: Codec) -> ScheduleSpec:
    """The stored form of a definition: its input encoded into the job task every run uses."""
    d = definition
    if d.orchestration is not None:
        task = codec.encode(d.input)
    else:
        job = job_task(codec.encode(d.input), retry=d.retry, timeout_ms=d.timeout_ms)
        task = encode_job_task(job)
    return ScheduleSpec(
        name=d.name,
        activity=d.activity,
        task=task,
        orchestration=d.orchestration,
        version=d.version,
        cron=d.cron,
        every_ms=d.every_ms,
        timezone=d.timezone,
        catch_up=d.catch_up,
        max_catch_up=d.max_catch_up,
        overlap=d.overlap,
        priority=d.priority,
        result_ttl_ms=d.result_ttl_ms,
    )
