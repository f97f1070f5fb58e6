"""An instance whose orchestration no worker knows can still be cancelled (issue 11, bug 2).

A cancel needs no code (it ends the execution before any code would run), so a worker that
does not know the name applies it anyway: the instance ends ``cancelled``, its in-flight work is
deleted and its sessions are purged. Without a cancel the instance waits, never failed.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import anyio.abc
import pytest

from durable_redis.client import Client
from durable_redis.core import ActivityContext, App, OrchestrationContext
from durable_redis.core import messages as msg
from durable_redis.core.turn import OrchestrationStatus, run_turn
from durable_redis.errors import NotRegisteredError
from durable_redis.runtime import Worker, WorkerOptions
from durable_redis.storage.base import InstanceStatus
from durable_redis.storage.keys import PartitionKeys
from durable_redis.storage.redis_store import RedisStore

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

old_app = App("deployed-before")
new_app = App("deployed-now")  # the orchestration was removed (or renamed) in this deploy


@old_app.activity
@new_app.activity
async def slow(ctx: ActivityContext, _: None = None) -> None:
    await anyio.sleep(3600)


@old_app.orchestration
async def holder(ctx: OrchestrationContext, _: None = None) -> None:
    session = await ctx.open_session()
    ctx.set_custom_status("holding")
    await ctx.call_activity(slow, None, session=session)


@new_app.orchestration
async def other(ctx: OrchestrationContext, _: None = None) -> str:
    return "fine"


@new_app.orchestration
async def waits(ctx: OrchestrationContext, _: None = None) -> Any:
    return await ctx.wait_for_event("go")


def test_run_turn_cancels_an_unknown_orchestration_without_its_code() -> None:
    start = msg.StartOrchestration(name="chekout", input=b"", execution_id=1)
    with pytest.raises(NotRegisteredError):
        run_turn(new_app, "typo-1", [], [start], now_ms=1000)
    result = run_turn(
        new_app, "typo-1", [], [start, msg.CancelRequested(reason="typo")], now_ms=1000
    )
    assert result.status is OrchestrationStatus.CANCELLED
    assert result.name == "chekout" and result.execution_id == 1
    assert [type(e).__name__ for e in result.new_events] == [
        "OrchestrationStarted",
        "OrchestrationCancelRequested",
        "OrchestrationFailed",
    ]
    assert result.failure is not None and result.failure.kind == "cancelled"
    assert result.failure.message == "typo"


async def _sessions(store: RedisStore) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = {}
    for p in range(store.partitions):
        found.update(await store._r.hgetall(PartitionKeys(store.namespace, p).sess))
    return found


async def test_a_running_instance_of_an_unknown_orchestration_is_cancelled_and_purged(
    store: RedisStore, task_group: anyio.abc.TaskGroup, fast_options: WorkerOptions
) -> None:
    client = Client(store, old_app)
    iid = await client.start(holder, None, instance_id="held")
    before = Worker(old_app, store, fast_options)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as first:  # returns once ``before`` has stopped
            first.start_soon(before.run)
            while True:
                state = await client.get_status(iid)
                holding = state is not None and state.custom_status == "holding"
                if holding and before.activities_in_flight:
                    break
                await anyio.sleep(0.02)
            assert await _sessions(store), "the session is open and owned"
            before.stop(grace_period=0)

    after = Worker(new_app, store, fast_options)
    task_group.start_soon(after.run)
    await anyio.sleep(0.5)  # turns of "held" would be abandoned as unregistered meanwhile
    await client.cancel(iid, "holder was removed")
    state = await client.wait_for_state(iid, timeout=20)
    assert state.status is InstanceStatus.CANCELLED, state
    assert state.error is not None and state.error.kind == "cancelled"
    assert await _sessions(store) == {}, "the session was purged"
    info = await store.get_instance(iid)
    assert info is not None
    history = await client.get_history(iid)
    assert [type(e).__name__ for e in history[-2:]] == [
        "OrchestrationCancelRequested",
        "OrchestrationFailed",
    ]
    ok = await Client(store, new_app).start(other, None)
    assert await client.wait_for_completion(ok, timeout=20) == "fine"
    after.stop()


async def test_a_typo_instance_cancelled_during_its_back_off_ends_cancelled(
    store: RedisStore, task_group: anyio.abc.TaskGroup, fast_options: WorkerOptions
) -> None:
    # The worker has abandoned the start (name unknown) with a back-off by the time the cancel
    # arrives alone: the cancel must wait for the start, not be consumed without it.
    slow_backoff = dataclasses.replace(
        fast_options, unregistered_backoff=1.0, unregistered_backoff_max=1.0
    )
    worker = Worker(new_app, store, slow_backoff)
    task_group.start_soon(worker.run)
    client = Client(store)  # no app: the CLI's client cannot check the name either
    iid = await client.start("chekout", {}, instance_id="typo-1")
    with anyio.fail_after(10):
        while "typo-1" not in worker._orchestrations._unregistered:
            await anyio.sleep(0.01)
    await client.cancel(iid, "typo")
    state = await client.wait_for_state(iid, timeout=20)
    assert state.status is InstanceStatus.CANCELLED, state
    worker.stop()


async def test_an_event_raised_before_a_delayed_start_is_kept_for_it(
    store: RedisStore, task_group: anyio.abc.TaskGroup, fast_options: WorkerOptions
) -> None:
    worker = Worker(new_app, store, fast_options)
    task_group.start_soon(worker.run)
    client = Client(store, new_app)
    start_at = datetime.now(UTC) + timedelta(seconds=1.0)
    iid = await client.start(waits, None, start_at=start_at)
    await client.raise_event(iid, "go", "early bird")
    assert await client.wait_for_completion(iid, timeout=20) == "early bird"
    worker.stop()
