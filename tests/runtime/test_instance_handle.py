"""``Client.start`` returns an ``InstanceHandle``: the instance id (a ``str``, as before) with
``.id``, ``.result()``, ``.state()``, ``.raise_event()`` and ``.cancel()``; ``SyncClient.start``
the blocking twin."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import pytest

from durable_redis import InstanceHandle, SyncClient, SyncInstanceHandle
from durable_redis.client import Client, InstanceId
from durable_redis.core import App, OrchestrationContext
from durable_redis.errors import ConfigurationError, OrchestrationCancelledError, WaitTimeoutError
from durable_redis.runtime import Worker, WorkerOptions
from durable_redis.storage.base import InstanceStatus
from durable_redis.storage.redis_store import RedisStore

pytestmark = [pytest.mark.timeout(60)]

app = App("handles")


@dataclass(frozen=True)
class Receipt:
    amount: int
    note: str


@app.orchestration
async def pay(ctx: OrchestrationContext, amount: int) -> Receipt:
    note = await ctx.wait_for_event("note", str)
    return Receipt(amount, note)


OPTIONS = WorkerOptions(fetch_wait=0.2, shutdown_grace_period=1.0, janitor_interval=None)


@pytest.fixture
async def worker(store: RedisStore) -> AsyncIterator[Worker]:
    w = Worker(app, store, OPTIONS)
    async with anyio.create_task_group() as tg:
        tg.start_soon(w.run)
        yield w
        w.stop()


@pytest.mark.anyio
async def test_the_handle_is_the_id_and_reads_the_instance(
    store: RedisStore, worker: Worker
) -> None:
    client = Client(store, app)
    handle = await client.start(pay, 7, instance_id="pay-1")
    assert isinstance(handle, InstanceHandle) and isinstance(handle, str)
    assert handle == "pay-1" and handle.id == "pay-1" and type(handle.id) is str
    assert {handle: 1}["pay-1"] == 1  # hashes as the id
    assert InstanceId is InstanceHandle  # the earlier name
    copied = copy.deepcopy(handle)  # pickling reduces the same way (__reduce__)
    assert copied == "pay-1" and type(copied) is str  # the client is not copied along

    state = await handle.state()
    assert state is not None and state.instance_id == "pay-1"
    with pytest.raises(WaitTimeoutError):
        await handle.result(timeout=0.2)
    await handle.raise_event("note", "thanks")
    receipt = await handle.result(timeout=20)
    assert receipt == Receipt(7, "thanks")  # decoded as the orchestration's return type
    done = await handle.state()
    assert done is not None and done.status is InstanceStatus.COMPLETED
    assert done.output == Receipt(7, "thanks")
    # the id still works wherever one is taken
    assert await client.wait_for_completion(handle.id, result_type=Receipt) == receipt


@pytest.mark.anyio
async def test_a_handle_cancels_its_instance(store: RedisStore, worker: Worker) -> None:
    handle = await Client(store, app).start(pay, 1)
    await handle.cancel("not needed")
    with pytest.raises(OrchestrationCancelledError):
        await handle.result(timeout=20)


@pytest.mark.anyio
async def test_a_handle_made_from_a_bare_id_has_no_client() -> None:
    bare: InstanceHandle[int] = InstanceHandle("order-1")
    assert bare == "order-1"
    with pytest.raises(ConfigurationError, match="not returned by a client"):
        await bare.result()


def test_the_sync_client_returns_a_blocking_handle(redis_url: str, namespace: str) -> None:
    client = SyncClient.from_url(redis_url, namespace=namespace, app=app)
    try:
        handle = client.start(pay, 3, instance_id="sync-1")
        assert isinstance(handle, SyncInstanceHandle) and handle == "sync-1"
        assert type(handle.id) is str
        state = handle.state()  # no worker here: the start is still pending
        assert state is not None and state.status is InstanceStatus.PENDING
        with pytest.raises(WaitTimeoutError):
            handle.result(timeout=0.2)
        assert client.get_status(handle) is not None  # the handle is an id
    finally:
        client.close()
