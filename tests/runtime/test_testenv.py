"""``durable_redis.testing.TestEnvironment``: the production worker on a virtual clock, against
the real embedded Redis and fakeredis; and the guards that keep the clock out of production."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from durable_redis.client import Client
from durable_redis.core import ActivityContext, App, OrchestrationContext, RetryPolicy
from durable_redis.errors import ConfigurationError, WaitTimeoutError
from durable_redis.runtime import WorkerOptions
from durable_redis.storage.keys import meta_key
from durable_redis.storage.redis_store import RedisStore
from durable_redis.storage.scripts import SCRIPTS, load_script_source
from durable_redis.testing import SyncTestEnvironment, TestEnvironment

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

DAY = timedelta(days=1)
app = App("testenv")
calls: list[str] = []


@app.activity
async def note(ctx: ActivityContext, text: str) -> str:
    calls.append(text)
    return text.upper()


@app.activity
def flaky(ctx: ActivityContext, text: str) -> str:
    calls.append(f"{text}#{ctx.attempt}")
    if ctx.attempt < 3:
        raise RuntimeError("not yet")
    return text


ticks: list[int] = []
scheduled = App("testenv-schedules")


@scheduled.schedule(every=timedelta(hours=1))
def hourly(ctx: ActivityContext) -> None:
    ticks.append(1)


@app.orchestration
async def sleeper(ctx: OrchestrationContext, days: int) -> list[Any]:
    start = ctx.now()
    await ctx.sleep(timedelta(days=days))
    done = await ctx.call_activity(note, "woke")
    return [(ctx.now() - start).total_seconds(), done]


@app.orchestration
async def retried(ctx: OrchestrationContext, text: str) -> str:
    policy = RetryPolicy(max_attempts=3, initial_delay=timedelta(hours=1), max_delay=DAY)
    return await ctx.call_activity(flaky, text, retry=policy)


@app.activity
async def held_open(ctx: ActivityContext, text: str) -> str:
    calls.append(text)
    if calls.count(text) == 1:
        await anyio.sleep_forever()  # the first delivery runs until its lease is lost
    return text


@app.orchestration
async def session_work(ctx: OrchestrationContext, text: str) -> str:
    session = await ctx.open_session_with_id("s")
    return await ctx.call_activity(held_open, text, session=session)


@app.activity
def upper(ctx: ActivityContext, text: str) -> str:
    return text.upper()


@app.orchestration
async def local_steps(ctx: OrchestrationContext, text: str) -> list[str]:
    sync = await ctx.call_local_activity(upper, text)
    return [sync, await ctx.call_local_activity(note, text)]


@app.activity(queue="gpu")
async def on_gpu(ctx: ActivityContext, text: str) -> str:
    calls.append(f"gpu {text}")
    return text


@app.orchestration
async def gpu_after_a_day(ctx: OrchestrationContext, text: str) -> str:
    await ctx.sleep(DAY)
    return await ctx.call_activity(on_gpu, text)


@app.orchestration
async def in_session(ctx: OrchestrationContext, text: str) -> list[str]:
    session = await ctx.open_session_with_id("s")
    first = await ctx.call_activity(note, f"{text}-1", session=session)
    await ctx.wait_for_event("go")
    second = await ctx.call_activity(note, f"{text}-2", session=session)
    return [first, second]


@pytest.fixture(params=["redis", "fakeredis"])
def backend(request: pytest.FixtureRequest, redis_url: str) -> dict[str, Any]:
    """TestEnvironment arguments: the suite's real server (a fresh namespace), or fakeredis."""
    calls.clear()
    if request.param == "redis":
        return {"backend": "redis", "redis_url": redis_url}
    return {"backend": "fakeredis"}


@pytest.fixture
async def env(backend: dict[str, Any]) -> AsyncIterator[TestEnvironment]:
    async with TestEnvironment(app, **backend) as environment:
        yield environment


@pytest.mark.parametrize("year", [2020, 2040])
async def test_the_clock_can_start_at_a_given_time(backend: dict[str, Any], year: int) -> None:
    start = datetime(year, 1, 31, 23, 0, tzinfo=UTC)
    async with TestEnvironment(app, start_time=start, **backend) as env:
        assert timedelta(0) <= await env.now() - start < timedelta(seconds=5)
        iid = await env.client.start(sleeper, 1)
        await env.client.wait_for_completion(iid, timeout=10)
        info = await env.client.store.get_instance(iid)
        assert info is not None  # the scripts stamp the record on that clock too
        created = datetime.fromtimestamp(info.created_at_ms / 1000, UTC)
        assert timedelta(0) <= created - start < timedelta(seconds=5)
        with pytest.raises(ConfigurationError, match="origin is set once"):
            assert env.control is not None
            await env.control.set_test_clock_origin(0)
    with pytest.raises(ConfigurationError, match="timezone-aware"):
        TestEnvironment(app, start_time=datetime(2030, 1, 1))


async def test_a_thirty_day_sleep_takes_well_under_a_second(env: TestEnvironment) -> None:
    wall = time.monotonic()
    before = await env.now()
    iid = await env.client.start(sleeper, 30)
    waited, done = await env.client.wait_for_completion(iid, timeout=10)
    assert time.monotonic() - wall < 1.0
    assert waited >= 30 * 86400  # ctx.now() (the Lua clock, recorded) moved 30 days
    assert done == "WOKE"
    assert await env.now() - before >= timedelta(days=30)
    info = await env.client.store.get_instance(iid)
    assert info is not None and info.completed_at_ms is not None
    # the record's times come from the scripts' server_now(): virtual too
    assert info.completed_at_ms - info.created_at_ms >= 30 * 86400 * 1000


async def test_retry_backoffs_follow_the_virtual_clock(env: TestEnvironment) -> None:
    wall = time.monotonic()
    iid = await env.client.start(retried, "x")
    assert await env.client.wait_for_completion(iid, timeout=10) == "x"
    assert calls == ["x#1", "x#2", "x#3"]  # two one-hour-plus back-offs, skipped
    assert time.monotonic() - wall < 2.0


async def test_a_delayed_job_and_its_retries_follow_the_virtual_clock(
    env: TestEnvironment,
) -> None:
    wall = time.monotonic()
    policy = RetryPolicy(max_attempts=3, initial_delay=timedelta(hours=1))
    job = await env.client.enqueue(flaky, "j", delay=DAY, retry=policy)
    assert await job.result(timeout=10) == "j"  # a job's result wait skips too
    assert len(calls) == 3
    assert time.monotonic() - wall < 2.0


async def test_auto_skip_disabled(env: TestEnvironment) -> None:
    iid = await env.client.start(sleeper, 1)
    with env.auto_skip_disabled(), pytest.raises(WaitTimeoutError):
        await env.client.wait_for_completion(iid, timeout=0.3)
    assert env.auto_skip is True
    assert (await env.client.wait_for_completion(iid, timeout=10))[1] == "WOKE"


async def test_without_auto_skip_time_moves_only_on_skip(env: TestEnvironment) -> None:
    env.auto_skip = False
    iid = await env.client.start(sleeper, 2)
    await env.run_until_idle()
    await env.skip(DAY)
    await env.run_until_idle()
    state = await env.client.get_status(iid)
    assert state is not None and state.status.value == "running"
    assert calls == []
    await env.skip(DAY)
    waited, _ = await env.client.wait_for_completion(iid, timeout=10)
    assert 2 * 86400 <= waited < 2 * 86400 + 60


async def test_a_skip_runs_each_schedule_tick_on_time(backend: dict[str, Any]) -> None:
    ticks.clear()
    async with TestEnvironment(scheduled, **backend) as env:
        await env.run_until_idle()
        await env.skip(timedelta(hours=3))  # stepped tick by tick: none is "missed"
        await env.run_until_idle()
        assert len(ticks) == 3


async def test_run_until_idle_with_skip_drains_every_timer(env: TestEnvironment) -> None:
    env.auto_skip = False
    iid = await env.client.start(sleeper, 3)
    await env.run_until_idle(skip=True)
    state = await env.client.get_status(iid)
    assert state is not None and state.status.value == "completed"


async def test_a_mock_replaces_an_activity_and_is_restored(env: TestEnvironment) -> None:
    with env.mock_activity(note, lambda ctx, text: f"mock {text}"):
        iid = await env.client.start(sleeper, 1)
        assert (await env.client.wait_for_completion(iid, timeout=10))[1] == "mock woke"
    assert calls == []
    iid = await env.client.start(sleeper, 1)
    assert (await env.client.wait_for_completion(iid, timeout=10))[1] == "WOKE"
    assert calls == ["woke"]


async def test_a_mock_by_name_can_raise(env: TestEnvironment) -> None:
    with env.mock_activity("flaky", raises=ValueError("down")):
        iid = await env.client.start(retried, "y")
        state = await env.client.wait_for_state(iid, timeout=10)
    assert state.status.value == "failed"
    assert state.error is not None and "down" in state.error.message


async def test_a_crash_after_an_activity_redelivers_it(env: TestEnvironment) -> None:
    first = env.workers[0].worker_id
    crash = env.crash_after(note)
    iid = await env.client.start(sleeper, 1)
    assert (await env.client.wait_for_completion(iid, timeout=10))[1] == "WOKE"
    assert crash.hits == 1
    assert calls == ["woke", "woke"]  # ran, the worker died before the ack, ran again
    assert [w.worker_id for w in env.workers] != [first]  # a new worker took over
    assert len(env.workers) == 1


async def test_a_crash_amid_other_turns_lets_the_clock_skip_over_their_locks(
    env: TestEnvironment,
) -> None:
    # the killed worker held (or, in its last shielded acks, just took) the locks of other
    # instances' turns: the clock must skip to their expiry, not wait for it in real time
    crash = env.crash_after(note)
    wall = time.monotonic()
    ids = [await env.client.start(sleeper, 30) for _ in range(6)]
    for iid in ids:
        assert (await env.client.wait_for_completion(iid, timeout=10))[1] == "WOKE"
    assert crash.hits == 1 and len(calls) == 7
    assert time.monotonic() - wall < 5.0  # a lock left to expire in real time takes 30 s


async def test_work_on_another_queue_is_seen_and_skipped_to(backend: dict[str, Any]) -> None:
    options = WorkerOptions(queues=("default", "gpu"), fetch_wait=0.5, janitor_interval=None)
    async with TestEnvironment(app, worker_options=options, **backend) as env:
        crash = env.crash_after(on_gpu)
        wall = time.monotonic()
        iid = await env.client.start(gpu_after_a_day, "g")
        assert await env.client.wait_for_completion(iid, timeout=10) == "g"
        assert crash.hits == 1 and calls == ["gpu g", "gpu g"]
        assert time.monotonic() - wall < 5.0


async def test_a_paused_queue_does_not_hold_the_clock(backend: dict[str, Any]) -> None:
    options = WorkerOptions(queues=("default", "batch"), fetch_wait=0.5, janitor_interval=None)
    async with TestEnvironment(app, worker_options=options, **backend) as env:
        await env.client.pause_queue("batch")
        job = await env.client.enqueue(note, "paused", queue="batch")  # ready, not runnable
        iid = await env.client.start(sleeper, 3)
        waited, _ = await env.client.wait_for_completion(iid, timeout=10)
        assert waited >= 3 * 86400
        assert (await job.status()).state.value == "queued"


async def test_a_crash_at_start_runs_the_activity_once(env: TestEnvironment) -> None:
    crash = env.crash_after(note, at_start=True)
    iid = await env.client.start(sleeper, 1)
    assert (await env.client.wait_for_completion(iid, timeout=10))[1] == "WOKE"
    assert crash.hits == 1 and calls == ["woke"]


@pytest.mark.parametrize("activity", [upper, note])
async def test_crash_faults_say_they_do_not_apply_to_local_activities(
    env: TestEnvironment, activity: Any
) -> None:
    env.crash_after(activity)
    iid = await env.client.start(local_steps, "l")
    state = await env.client.wait_for_state(iid, timeout=10)
    assert state.status.value == "failed"
    assert state.error is not None
    assert "crash faults do not apply to local activity" in state.error.message
    assert len(env.workers) == 1 and not env._dead  # nobody was killed


async def test_deliver_twice(env: TestEnvironment) -> None:
    env.deliver_twice(note)
    iid = await env.client.start(sleeper, 1)
    await env.client.wait_for_completion(iid, timeout=10)
    assert calls == ["woke", "woke"]


async def test_an_expired_session_lease_cancels_and_redelivers_its_work(
    backend: dict[str, Any],
) -> None:
    options = WorkerOptions(renewal_interval=0.1, fetch_wait=0.2, janitor_interval=None)
    async with TestEnvironment(app, worker_options=options, **backend) as env:
        iid = await env.client.start(session_work, "h")
        with anyio.fail_after(10):
            while calls != ["h"]:
                await anyio.sleep(0.01)
        assert len(env.workers[0].sessions.owned()) == 1
        with pytest.raises(ConfigurationError, match="no open session"):
            await env.expire_session(iid, "nope")
        await env.expire_session(iid, "s")
        # the next renewal finds the session gone: the activity is cancelled, handed back,
        # and runs again under a new claim of the session
        assert await env.client.wait_for_completion(iid, timeout=10) == "h"
    assert calls == ["h", "h"]


async def test_the_session_idle_timeout_follows_the_virtual_clock(
    backend: dict[str, Any],
) -> None:
    options = WorkerOptions(
        renewal_interval=0.05, session_idle_timeout=3600, fetch_wait=0.2, janitor_interval=None
    )
    async with TestEnvironment(app, worker_options=options, **backend) as env:
        await env.client.start(in_session, "i")
        await env.run_until_idle()
        worker = env.workers[0]
        assert len(worker.sessions.owned()) == 1
        await anyio.sleep(0.3)  # renewals pass: an idle hour has not
        assert len(worker.sessions.owned()) == 1
        await env.skip(timedelta(hours=2))
        with anyio.fail_after(5):
            while worker.sessions.owned():
                await anyio.sleep(0.01)


async def test_deploy_swaps_the_code_of_running_workers(env: TestEnvironment) -> None:
    iid = await env.client.start(in_session, "d")
    await env.run_until_idle()
    other = App("testenv")
    other.activity(name="note")(lambda ctx, text: f"v2 {text}")
    other.orchestration(in_session)
    await env.deploy(other)
    await env.client.raise_event(iid, "go")
    assert await env.client.wait_for_completion(iid, timeout=10) == ["D-1", "v2 d-2"]


async def test_restart_redis_keeps_the_work() -> None:
    calls.clear()
    async with TestEnvironment(app) as env:  # its own embedded Redis, AOF on
        iid = await env.client.start(sleeper, 7)
        await env.run_until_idle()
        await env.restart_redis()
        waited, done = await env.client.wait_for_completion(iid, timeout=30)
    assert waited >= 7 * 86400 and done == "WOKE"


# -- the clock stays out of production -----------------------------------------------------------
def test_production_scripts_never_read_a_clock_offset() -> None:
    with_clock = [n for n in SCRIPTS if "server_now()" in load_script_source(n)]
    assert with_clock, "no script reads the clock?"
    for name in SCRIPTS:
        assert "clock_offset" not in load_script_source(name), name
    for name in with_clock:
        assert "clock_offset" in load_script_source(name, test_clock=True), name


async def test_a_production_store_ignores_a_test_namespace_clock(store: RedisStore) -> None:
    test = RedisStore(store._redis, namespace=f"{store.namespace}-t", test_clock=True)
    await test.initialize()
    await test.advance_test_clock(10 * 86400 * 1000)
    ahead = await test.server_time_ms() - await store.server_time_ms()
    assert 10 * 86400 * 1000 - 1000 < ahead < 10 * 86400 * 1000 + 1000
    prod = RedisStore(store._redis, namespace=test.namespace)  # a worker without the option
    await prod.initialize()
    real = await store.server_time_ms()
    assert abs(await prod.server_time_ms() - real) < 5000
    with pytest.raises(ConfigurationError, match="test environments only"):
        await prod.advance_test_clock(1)
    # the scripts: create_instance stamps the record with server_now()
    real = await store.server_time_ms()
    by_prod = await Client(prod, app).start(sleeper, 1)
    by_test = await Client(test, app).start(sleeper, 1)
    prod_info, test_info = await prod.get_instance(by_prod), await prod.get_instance(by_test)
    assert prod_info is not None and test_info is not None
    assert abs(prod_info.created_at_ms - real) < 5000
    assert test_info.created_at_ms - real >= 10 * 86400 * 1000 - 1000
    await test.close()
    await prod.close()


async def test_a_test_store_refuses_a_namespace_it_did_not_create(store: RedisStore) -> None:
    before = await store._r.hgetall(meta_key(store.namespace))
    test = RedisStore(store._redis, namespace=store.namespace, test_clock=True)
    with pytest.raises(ConfigurationError, match="not created by a test environment"):
        await test.initialize()
    assert await store._r.hgetall(meta_key(store.namespace)) == before
    with pytest.raises(ConfigurationError, match="only moves forward"):
        fresh = RedisStore(store._redis, namespace=f"{store.namespace}-f", test_clock=True)
        await fresh.advance_test_clock(-1)


# -- the blocking twin ---------------------------------------------------------------------------
@pytest.mark.parametrize("backend_name", ["redis", "fakeredis"])
def test_the_sync_environment(backend_name: str, redis_url: str) -> None:
    calls.clear()
    url = redis_url if backend_name == "redis" else None
    with SyncTestEnvironment(app, backend=backend_name, redis_url=url) as env:
        wall = time.monotonic()
        iid = env.client.start(sleeper, 30)
        waited, done = env.client.wait_for_completion(iid, timeout=10)
        assert waited >= 30 * 86400 and done == "WOKE"
        assert time.monotonic() - wall < 1.0
        env.auto_skip = False
        assert env.env.auto_skip is False
        before = env.now()
        assert env.skip(DAY) - before >= DAY
        with env.mock_activity(note, returns="m"):
            iid = env.client.start(sleeper, 0)
            assert env.client.wait_for_completion(iid, timeout=10)[1] == "m"


async def test_doctor_names_a_test_namespace(env: TestEnvironment) -> None:
    from durable_redis.storage import doctor

    await env.skip(DAY)
    assert env.control is not None
    report = await doctor.run_checks(env.control, latency_samples=1)
    schema = next(c for c in report.checks if c.name == "schema")
    assert schema.verdict == "warn"
    found = re.search(r"TEST namespace .*virtual clock \+(\d+) ms", schema.found)
    assert found is not None, schema.found
    assert 86_000_000 < int(found.group(1)) <= 86_400_000  # a day, less the real time taken
    production = doctor.check_schema({"schema": "1", "partitions": "1"})
    assert production.verdict == "ok" and "TEST" not in production.found


def test_the_plugin_resolves_the_app_it_is_given() -> None:
    from durable_redis import demo
    from durable_redis.pytest_plugin import resolve_app

    assert resolve_app(app) is app
    assert resolve_app("durable_redis.demo:app") is demo.app
    with pytest.raises(pytest.UsageError, match="module:attribute"):
        resolve_app("durable_redis.demo")
    with pytest.raises(pytest.UsageError, match="not a durable_redis App"):
        resolve_app("durable_redis.demo:chat_turn")
    with pytest.raises(pytest.UsageError, match="no attribute"):
        resolve_app("durable_redis.demo:nope")


def test_environment_arguments_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="backend"):
        TestEnvironment(app, backend="sqlite")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="redis_url"):
        TestEnvironment(app, backend="fakeredis", redis_url="redis://x")
    env = TestEnvironment(app, backend="fakeredis")
    with pytest.raises(ConfigurationError, match="enter the environment"):
        _ = env.client
    with pytest.raises(ConfigurationError, match="times"):
        env.crash_after(note, times=0)


@pytest.mark.cluster
async def test_the_environment_on_a_redis_cluster(redis_cluster: Any) -> None:
    calls.clear()
    async with TestEnvironment(app, redis_url=redis_cluster.url, partitions=8) as env:
        crash = env.crash_after(note)
        ids = [await env.client.start(sleeper, 30) for _ in range(4)]  # spread over partitions
        for iid in ids:
            waited, done = await env.client.wait_for_completion(iid, timeout=20)
            assert waited >= 30 * 86400 and done == "WOKE"
    assert crash.hits == 1 and len(calls) == 5


async def test_a_test_store_never_calls_the_production_function_library(redis_url: str) -> None:
    import redis.asyncio as aioredis

    from durable_redis.storage.functions import delete_library, load_library

    raw = aioredis.Redis.from_url(redis_url)
    await load_library(raw)  # FCALL would run these: production scripts, no virtual clock
    try:
        with pytest.raises(ConfigurationError, match="its own scripts"):
            RedisStore(raw, namespace="x", test_clock=True, scripts="functions")
        test = RedisStore(raw, namespace=f"fl-{time.time_ns()}", test_clock=True)
        await test.initialize()
        await test.advance_test_clock(5 * 86400 * 1000)
        real = int(time.time() * 1000)
        iid = await Client(test, app).start(sleeper, 1)
        info = await test.get_instance(iid)
        assert info is not None and info.created_at_ms - real >= 5 * 86400 * 1000 - 5000
        assert test.calls["create_instance"] == 1
    finally:
        await delete_library(raw)
        await raw.aclose()
