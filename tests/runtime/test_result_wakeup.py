"""A client waiting on an instance's result or on an update's answer is woken by the
instance's signal (the turn that ends it or records the reply publishes it), not by polling:
with both the poll and the signalled re-read made 30 s here, the answers still come in
seconds, on one Redis and on a Redis Cluster (the doorbell's sharded subscriptions)."""

from __future__ import annotations

import anyio
import anyio.abc
import pytest

from durable_redis import _client_messaging
from durable_redis import client as client_module
from durable_redis.client import Client
from durable_redis.core import App, OrchestrationContext
from durable_redis.runtime import Worker, WorkerOptions
from durable_redis.storage.base import InstanceSignal, InstanceStatus
from durable_redis.storage.redis_store import RedisStore

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

app = App("wakeup")


@app.orchestration
async def counter(ctx: OrchestrationContext, start: int) -> int:
    total = start

    def add(n: int) -> int:
        nonlocal total
        total += n
        return total

    ctx.set_update_handler("add", add)
    await ctx.wait_for_event("stop")
    return total


@pytest.fixture
def slow_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (client_module, _client_messaging):
        monkeypatch.setattr(module, "_POLL_START_S", 30.0)
    monkeypatch.setattr(InstanceSignal, "reread_s", 30.0)


async def test_result_and_update_waits_wake_on_the_signal(
    store: RedisStore,
    slow_polls: None,
    monkeypatch: pytest.MonkeyPatch,
    fast_options: WorkerOptions,
    task_group: anyio.abc.TaskGroup,
) -> None:
    worker = Worker(app, store, fast_options)
    task_group.start_soon(worker.run)
    client = Client(store, app)
    handle = await client.start(counter, 10)
    with anyio.fail_after(10):  # a poll would take 30 s
        assert await client.update(handle, "add", 5) == 15
        assert await client.update(handle, "add", 2) == 17
    result: list[int] = []
    reads: list[object] = []
    get_instance = store.get_instance

    async def counted(instance_id: str) -> object:
        info = await get_instance(instance_id)
        reads.append(info)
        return info

    monkeypatch.setattr(store, "get_instance", counted)

    async def wait() -> None:
        result.append(await handle.result(timeout=45))

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        with anyio.fail_after(10):
            while not reads:  # the waiter has read "running": only the signal wakes it now
                await anyio.sleep(0.01)
            assert getattr(reads[0], "status", None) is InstanceStatus.RUNNING
            await handle.raise_event("stop")
            while not result:
                await anyio.sleep(0.01)
    assert result == [17]
    worker.stop()
