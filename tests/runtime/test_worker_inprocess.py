"""The Worker in the test's own event loop, against the real server and fakeredis.

The fast lane for the runtime's own verdicts: poison turns, undecodable history, a clean stop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest

from durable_redis.client import Client
from durable_redis.core import ActivityContext, App, Backoff, OrchestrationContext, RetryPolicy
from durable_redis.runtime import Worker, WorkerOptions
from durable_redis.runtime.burst import wait_until_idle
from durable_redis.storage.base import InstanceStatus
from durable_redis.storage.redis_store import RedisStore
from tests.harness import StoreHarness

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

app = App("inprocess")


@app.activity
async def add_one(ctx: ActivityContext, x: int) -> int:
    return x + 1


@app.activity
def shout(ctx: ActivityContext, text: str) -> str:
    assert ctx.idempotency_key.startswith(ctx.instance_id)
    return text.upper()


@app.orchestration
async def chain(ctx: OrchestrationContext, x: int) -> list[Any]:
    y = await ctx.call_activity(add_one, x)
    z = await ctx.call_activity(shout, f"v{y}")
    await ctx.wait_for_event("go")
    return [y, z]


OPTIONS = WorkerOptions(
    lock_timeout=2.0,
    session_lock_timeout=2.0,
    renewal_interval=0.5,
    fetch_wait=0.2,
    shutdown_grace_period=1.0,
    janitor_interval=None,
)


@pytest.fixture
async def running(store: RedisStore) -> AsyncIterator[Callable[..., Worker]]:
    """Start workers in the background; all are stopped (gracefully) at teardown."""
    started: list[Worker] = []
    async with anyio.create_task_group() as tg:

        def start(options: WorkerOptions = OPTIONS) -> Worker:
            worker = Worker(app, store, options)
            started.append(worker)
            tg.start_soon(worker.run)
            return worker

        yield start
        for worker in started:
            worker.stop()


async def wait_status(client: Client, iid: str, status: InstanceStatus) -> None:
    with anyio.fail_after(20):
        while True:
            state = await client.get_status(iid)
            if state is not None and state.status is status:
                return
            await anyio.sleep(0.02)


async def test_turns_activities_events_and_clean_stop(
    store: RedisStore, running: Callable[..., Worker]
) -> None:
    worker = running()
    client = Client(store, app)
    iid = await client.start(chain, 1)
    await wait_status(client, iid, InstanceStatus.RUNNING)
    await wait_until_idle(worker, timeout=20)  # both activities ran; it waits for "go"
    await client.raise_event(iid, "go")
    assert await client.wait_for_completion(iid, timeout=20) == [2, "V2"]
    # the turns after the first advanced the suspended orchestration instead of replaying
    assert worker._orchestrations.resumed_turns >= 2
    with anyio.fail_after(5):
        worker.stop()
        while worker.activities_in_flight or worker.turns_in_flight:
            await anyio.sleep(0.01)


async def test_poison_turn_fails_the_instance(
    store: RedisStore, running: Callable[..., Worker]
) -> None:
    client = Client(store, app)
    iid = await client.start(chain, 1)
    # Three deliveries that never committed (as if three workers crashed mid-turn).
    for _ in range(3):
        lease = await store.fetch_orchestration(lock_ms=1000, wait_ms=1000)
        assert lease is not None and lease.instance_id == iid
        await store.abandon_orchestration(lease)
    running(WorkerOptions(**{**_fields(OPTIONS), "max_attempts": 2}))
    await wait_status(client, iid, InstanceStatus.FAILED)
    state = await client.get_status(iid)
    assert state is not None and state.error is not None
    assert state.error.kind == "poison"


async def test_undecodable_history_fails_as_poisoned(
    store: RedisStore, running: Callable[..., Worker]
) -> None:
    worker = running()
    client = Client(store, app)
    iid = await client.start(chain, 1)
    await wait_status(client, iid, InstanceStatus.RUNNING)
    await wait_until_idle(worker, timeout=20)  # the activities ran; the instance waits for "go"
    key = store._pk(iid).instance(iid).history(1)  # its own partition (P = 8 on the cluster)
    await store._r.rpush(key, b"\xc1 not msgpack")
    await client.raise_event(iid, "go")
    await wait_status(client, iid, InstanceStatus.FAILED)
    state = await client.get_status(iid)
    assert state is not None and state.error is not None
    assert state.error.kind == "poison" and "cannot be decoded" in state.error.message


async def test_unregistered_orchestration_is_never_failed(
    store: RedisStore, running: Callable[..., Worker]
) -> None:
    worker = running()
    client = Client(store, app)
    # a client without the app: with it, start() itself refuses the unknown name
    iid = await Client(store).start("nobody_knows_me")
    with anyio.fail_after(20):  # refused twice (back-off 1 s), and never failed for it
        while worker._orchestrations._unregistered.get(iid, 0) < 2:
            await anyio.sleep(0.02)
    state = await client.get_status(iid)
    assert state is not None and state.status is InstanceStatus.PENDING


def _fields(options: WorkerOptions) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}


async def test_janitor_removes_expired_instances(
    store: RedisStore, running: Callable[..., Worker]
) -> None:
    running(WorkerOptions(**{**_fields(OPTIONS), "janitor_interval": 0.2, "retention": 0.1}))
    client = Client(store, app)
    iid = await client.start(chain, 1)
    await wait_status(client, iid, InstanceStatus.RUNNING)
    await client.raise_event(iid, "go")
    await client.wait_for_completion(iid, timeout=20)
    with anyio.fail_after(10):
        while await client.get_status(iid) is not None:
            await anyio.sleep(0.05)


_hold = {"release": False, "running": 0}


@app.activity
async def held(ctx: ActivityContext, x: int) -> int:
    _hold["running"] += 1
    while not _hold["release"]:
        await anyio.sleep(0.01)
    return x


@app.orchestration
async def one_session(ctx: OrchestrationContext, x: int) -> int:
    session = await ctx.open_session()
    result: int = await ctx.call_activity(held, x, session=session)
    await ctx.close_session(session)
    return result


async def test_a_worker_never_owns_more_sessions_than_its_limit(
    store: RedisStore, store_harness: StoreHarness, running: Callable[..., Worker]
) -> None:
    """Sessions are counted when fetched, so back-to-back fetches cannot overshoot the cap."""
    _hold.update(release=False, running=0)
    client = Client(store, app)
    worker = running(
        WorkerOptions(
            lock_timeout=2.0,
            session_lock_timeout=2.0,
            renewal_interval=0.5,
            fetch_wait=0.2,
            shutdown_grace_period=1.0,
            janitor_interval=None,
            batch_size=1,
            max_sessions_per_worker=2,
        )
    )
    iids = [await client.start(one_session, i) for i in range(4)]
    with anyio.fail_after(20):
        while _hold["running"] < 2:
            await anyio.sleep(0.01)
    fetches = store_harness.calls_named("fetch_work_items")
    with anyio.fail_after(20):  # three more fetches: chances for (wrong) extra claims
        while store_harness.calls_named("fetch_work_items") < fetches + 3:
            await anyio.sleep(0.01)
    assert worker._activities._sessions.owned_count == 2
    assert _hold["running"] == 2
    _hold["release"] = True
    for iid in iids:
        await wait_status(client, iid, InstanceStatus.COMPLETED)


_attempts_seen: list[tuple[int, int]] = []
_keys_seen: list[str] = []


@app.activity
def flaky(ctx: ActivityContext, fail_times: int) -> int:
    _attempts_seen.append((ctx.attempt, ctx.delivery))
    _keys_seen.append(ctx.idempotency_key)
    if ctx.attempt <= fail_times:
        raise RuntimeError(f"attempt {ctx.attempt} fails")
    return ctx.attempt


@app.orchestration
async def retried(ctx: OrchestrationContext, fail_times: int) -> int:
    policy = RetryPolicy(max_attempts=5, initial_delay=0.01, backoff=Backoff.FIXED)
    result: int = await ctx.call_activity(flaky, fail_times, retry=policy)
    return result


async def test_activity_context_attempt_counts_retry_policy_attempts(
    store: RedisStore, running: Callable[..., Worker]
) -> None:
    _attempts_seen.clear()
    _keys_seen.clear()
    client = Client(store, app)
    running()
    iid = await client.start(retried, 2)
    assert await client.wait_for_completion(iid, timeout=20) == 3
    assert _attempts_seen == [(1, 1), (2, 1), (3, 1)]
    # one key for the whole call: a retry after a timeout cannot repeat the side effect
    assert len(set(_keys_seen)) == 1
    assert _keys_seen[0].startswith(f"{iid}:1:")
