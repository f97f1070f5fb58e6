"""core's parts of jobs and schedules: the job task encoding, retry policy round trip, the
activity context's job fields, schedule definitions (validation), tick arithmetic (cron in a time
zone, intervals, catch-up policies) and the registration decorator. Pure: no Redis."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from durable_redis.core import ActivityContext, App, MsgpackCodec, RetryPolicy
from durable_redis.core.jobs import (
    JobTask,
    decode_job_task,
    encode_job_task,
    encode_job_tasks,
    job_task,
)
from durable_redis.core.retry import Backoff
from durable_redis.core.schedules import (
    ScheduleDefinition,
    decode_schedule,
    encode_schedule,
    next_tick,
    schedule_declaration,
    spec_of,
    ticks_due,
)
from durable_redis.errors import CodecError, RegistrationError, ValidationError


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp() * 1000)


def spec(**kw: object):
    return spec_of(ScheduleDefinition(name="s", activity="a", input="x", **kw), MsgpackCodec())  # type: ignore[arg-type]


def test_job_task_round_trip_and_small_defaults() -> None:
    plain = job_task(b"\x01", retry=None, timeout_ms=None)
    assert plain == JobTask(input=b"\x01") and plain.retry_policy.max_attempts == 1
    assert len(encode_job_task(plain)) < 32
    policy = RetryPolicy(
        max_attempts=4,
        initial_delay=timedelta(milliseconds=250),
        backoff=Backoff.LINEAR,
        max_delay=10,
        timeout=2,
        non_retryable=(KeyError, "Boom"),
    )
    tuned = job_task(b"in", retry=policy, timeout_ms=None)
    assert tuned.timeout_ms == 2000 and tuned.non_retryable == ("KeyError", "Boom")
    back = decode_job_task(encode_job_task(tuned))
    assert back == tuned
    rebuilt = back.retry_policy
    assert rebuilt.delay_ms(2) == policy.delay_ms(2) and rebuilt.max_attempts == 4
    assert job_task(b"", retry=policy, timeout_ms=7).timeout_ms == 7
    many = encode_job_tasks(tuned, [b"a", b"b"])
    assert [decode_job_task(m).input for m in many] == [b"a", b"b"]
    with pytest.raises(CodecError):
        decode_job_task(b"\xc1garbage")


def test_activity_context_of_a_job() -> None:
    seen: list[object] = []
    ctx = ActivityContext(
        instance_id="j1", execution_id=0, activity_id=0, name="f", job_id="j1", progress=seen.append
    )
    ctx.report_progress({"done": 1})
    assert seen == [{"done": 1}] and ctx.idempotency_key == "job:j1"
    plain = ActivityContext(
        instance_id="i", execution_id=1, activity_id=2, name="f", cancel_event=threading.Event()
    )
    plain.report_progress("ignored")  # no sink: a no-op for orchestration activities
    assert plain.idempotency_key == "i:1:2" and plain.job_id is None


def test_schedule_specs_validate_and_round_trip() -> None:
    s = spec(cron="*/5 * * * *", timezone="Europe/Paris", catch_up="all", overlap="allow")
    assert decode_schedule(encode_schedule(s)) == s
    name, data, digest, first = schedule_declaration(s, ms(2026, 3, 1, 10, 2))
    assert name == "s" and decode_schedule(data) == s and len(digest) == 16
    assert first == ms(2026, 3, 1, 10, 5)
    assert schedule_declaration(s, 0)[2] == digest  # the hash depends on the spec only
    for bad in (
        {"cron": "not a cron"},
        {"cron": "61 * * * *"},
        {"cron": "* * * * *", "every_ms": 1000},
        {},
        {"every_ms": 999},
        {"cron": 5},
        {"cron": "* * * * *", "timezone": "Mars/Olympus"},
        {"cron": "* * * * *", "catch_up": "sometimes"},
        {"cron": "* * * * *", "overlap": "maybe"},
        {"cron": "* * * * *", "max_catch_up": 0},
    ):
        with pytest.raises(ValidationError):
            spec(**bad)


def test_ticks_of_cron_in_a_zone_and_of_intervals() -> None:
    paris = spec(cron="0 9 * * *", timezone="Europe/Paris")
    assert next_tick(paris, ms(2026, 1, 10, 12, 0)) == ms(2026, 1, 11, 8, 0)  # UTC+1
    assert next_tick(paris, ms(2026, 7, 10, 12, 0)) == ms(2026, 7, 11, 7, 0)  # UTC+2 (DST)
    assert next_tick(paris, ms(2026, 1, 11, 8, 0)) == ms(2026, 1, 12, 8, 0)  # strictly after
    every = spec(every_ms=5_000)
    assert next_tick(every, 12_345) == 15_000 and next_tick(every, 15_000) == 20_000


def test_catch_up_policies() -> None:
    on_time = spec(every_ms=1000)
    assert ticks_due(on_time, 100_000, 100_050) == ([100_000], 101_000)
    for policy, expected in (
        ("skip", [100_000]),
        ("once", [100_000]),
        ("all", [97_000, 98_000, 99_000, 100_000]),
    ):
        assert ticks_due(spec(every_ms=1000, catch_up=policy), 97_000, 100_200) == (
            expected,
            101_000,
        )
    assert ticks_due(spec(every_ms=1000, catch_up="skip"), 10_000, 100_500) == ([], 101_000)
    assert ticks_due(spec(every_ms=1000, catch_up="once"), 10_000, 100_500) == ([20_000], 101_000)
    got = ticks_due(spec(every_ms=1000, catch_up="all", max_catch_up=3), 10_000, 100_500)
    assert got == ([10_000, 11_000, 12_000], 101_000)


def test_schedule_decorator_registers_the_activity() -> None:
    app = App("s")

    @app.schedule(
        every=timedelta(minutes=5), input=3, name="five", retry=RetryPolicy(max_attempts=2)
    )
    def tick(ctx: ActivityContext, n: int) -> int:
        return n

    @app.schedule(cron="0 0 * * *", timezone="UTC", timeout=30, result_ttl=0)
    @app.activity
    def daily(ctx: ActivityContext) -> None:
        return None

    assert app.get_activity("tick").fn is tick and app.get_activity("daily").fn is daily
    five, day = app.schedules
    assert (five.name, five.activity, five.every_ms, five.input) == ("five", "tick", 300_000, 3)
    assert (day.name, day.cron, day.timeout_ms, day.result_ttl_ms) == (
        "daily",
        "0 0 * * *",
        30_000,
        0,
    )
    assert spec_of(five, MsgpackCodec()).task != spec_of(day, MsgpackCodec()).task
    with pytest.raises(RegistrationError):
        app.schedule(every=60, name="five")(daily)
    with pytest.raises(ValidationError):
        app.schedule(cron="nope")
